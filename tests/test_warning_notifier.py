"""Notice delivery against real local peers: SMTP (aiosmtpd), webhooks and an SMS gateway
over HTTP; retries with back-off, dead letters, and the whole chain from a reading."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import OutboxState
from storage.objects import LocalObjectStore
from storage.sensor_models import Duty, Notification
from vms.services import Services
from vms.warning.component import WarningComponent
from vms.warning.notices import queue_notices
from vms.warning.notifier import Notifier
from vms.warning.recipients import Recipient

from .alarms_support import wait_until
from .warning_support import (
    EMAILS,
    SimClock,
    add_sensor,
    free_port,
    http_receiver,
    seed_tree,
    smtp_server,
    warning_settings,
)

WHO = Recipient(1, "/1/", "safety_dept", "安全部 值班", "duty@ent.example", "13800000009")


@pytest.fixture
def db(tmp_path: Path, db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.open()
    seed_tree(database)
    yield database
    database.close()


def queue(db: Database, recipients: list[Recipient], webhooks: list[str] | None = None) -> None:
    with db.session() as s:
        queue_notices(
            s,
            recipients,
            "【红色预警(重大风险)】新预警 示例化工 GAS-1 高高报 60 %LEL",
            "企业 enterprise: 示例化工\n数值 value: 60 %LEL",
            {"kind": "warning.opened", "warning": {"warning_id": "w-1", "level": "red"}},
            webhooks=webhooks,
        )


def rows(db: Database) -> list[Notification]:
    with db.session() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


async def test_email_is_received_by_a_real_smtp_server(tmp_path: Path, db: Database) -> None:
    with smtp_server() as (port, received):
        settings = warning_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=port)
        notifier = Notifier(settings.warning, db)
        queue(db, [Recipient(1, "/1/", "hq", "总部", email="hq@ent.example")])
        try:
            assert await notifier.deliver_due() == 1
        finally:
            await notifier.stop()
        (envelope,) = received
        assert envelope.rcpt_tos == ["hq@ent.example"]
        mail = message_from_bytes(envelope.original_content, policy=policy.default)
        assert mail["Subject"].startswith("【红色预警(重大风险)】新预警 示例化工 GAS-1")
        assert "60 %LEL" in mail.get_content()
        (row,) = rows(db)
        assert row.state is OutboxState.sent and row.attempts == 1 and row.sent_at


async def test_webhook_and_sms_reach_real_http_servers(tmp_path: Path, db: Database) -> None:
    async with http_receiver() as rec:
        settings = warning_settings(
            tmp_path,
            webhooks=[rec.url("/hook")],
            webhook_token="hook-token",
            sms_url=rec.url("/sms"),
            sms_token="sms-token",
        )
        notifier = Notifier(settings.warning, db)
        contact = Recipient(
            1, "/1/", "hq", "总部", phone="13800000009", webhook_url=rec.url("/own")
        )
        queue(db, [contact], webhooks=settings.warning.webhooks)
        try:
            assert await notifier.deliver_due() == 3
        finally:
            await notifier.stop()
        (sms,) = rec.bodies("/sms")
        assert sms["to"] == "13800000009" and sms["text"].startswith("【红色预警")
        (hook,) = rec.bodies("/hook")
        assert hook["kind"] == "warning.opened" and hook["warning"]["level"] == "red"
        assert hook["subject"].startswith("【红色预警") and hook["notification_id"]
        (own,) = rec.bodies("/own")
        assert own["recipient"]["duty"] == "hq"
        headers = {path: h for path, _, h in rec.posts}
        assert headers["/hook"]["authorization"] == "Bearer hook-token"
        assert headers["/sms"]["authorization"] == "Bearer sms-token"
        assert "authorization" not in headers["/own"]  # the token is for the global webhooks
        assert {r.state for r in rows(db)} == {OutboxState.sent}


async def test_refused_then_delivered_with_back_off(tmp_path: Path, db: Database) -> None:
    clock = SimClock(time.time() + 1)
    async with http_receiver() as rec:
        dead_port = free_port()  # nothing listens here: connection refused
        settings = warning_settings(
            tmp_path,
            webhooks=[rec.url("/hook"), f"http://127.0.0.1:{dead_port}/hook"],
            notify_retry_base_s=5,
            notify_retry_max_s=15,
        )
        notifier = Notifier(settings.warning, db, clock=clock)
        rec.fail_next = 2
        queue(db, [], webhooks=settings.warning.webhooks)
        try:
            assert await notifier.deliver_due() == 2  # 503 and refused
            by_target = {r.target: r for r in rows(db)}
            live, dead = by_target[rec.url("/hook")], by_target[settings.warning.webhooks[1]]
            assert live.attempts == 1 and "HTTP 503" in live.last_error
            assert dead.attempts == 1 and "ConnectError" in dead.last_error
            first_retry = live.next_attempt_at.timestamp() - clock.t
            assert first_retry == pytest.approx(5, abs=0.01)
            assert await notifier.deliver_due(clock.t + 4.9) == 0  # not before its time
            clock.t += 5
            assert await notifier.deliver_due() == 2  # second 503, still refused
            live = next(r for r in rows(db) if r.target == rec.url("/hook"))
            assert live.next_attempt_at.timestamp() - clock.t == pytest.approx(10, abs=0.01)
            clock.t += 10
            assert await notifier.deliver_due() == 2
            live = next(r for r in rows(db) if r.target == rec.url("/hook"))
            assert live.state is OutboxState.sent and live.attempts == 3 and live.last_error == ""
            clock.t += 15  # the delay stops doubling at notify_retry_max_s
            assert await notifier.deliver_due() == 1
            dead = next(r for r in rows(db) if r.target == settings.warning.webhooks[1])
            assert dead.attempts == 4 and dead.state is OutboxState.pending
            assert dead.next_attempt_at.timestamp() - clock.t == pytest.approx(15, abs=0.01)
            async with http_receiver(dead_port) as late:  # the unreachable one comes up
                clock.t += 15
                assert await notifier.deliver_due() == 1
            back = next(r for r in rows(db) if r.target == settings.warning.webhooks[1])
            assert back.state is OutboxState.sent and back.attempts == 5
            assert late.bodies("/hook")[0]["kind"] == "warning.opened"
        finally:
            await notifier.stop()
        assert rec.refused == 2 and len(rec.bodies("/hook")) == 1


async def test_dead_letter_after_the_limit(tmp_path: Path, db: Database) -> None:
    clock = SimClock(time.time() + 1)
    settings = warning_settings(
        tmp_path,
        sms_url=f"http://127.0.0.1:{free_port()}/sms",
        notify_retry_base_s=4,
        notify_dead_after_s=10,
    )
    notifier = Notifier(settings.warning, db, clock=clock)
    queue(db, [WHO])  # e-mail (no SMTP configured) and SMS (gateway down)
    try:
        assert await notifier.deliver_due() == 2
        email, sms = rows(db)
        assert email.state is OutboxState.dead and "smtp_host" in email.last_error
        assert sms.state is OutboxState.pending
        clock.t += 4
        await notifier.deliver_due()
        assert rows(db)[1].state is OutboxState.pending  # 5 s old: keeps trying
        clock.t += 8
        await notifier.deliver_due()
        sms = rows(db)[1]
        assert (
            sms.state is OutboxState.dead and sms.attempts == 3 and "ConnectError" in sms.last_error
        )
        clock.t += 3600
        assert await notifier.deliver_due() == 0
    finally:
        await notifier.stop()
    assert notifier.counters["dead"] == 2


async def test_a_red_reading_reaches_every_inbox(tmp_path: Path, db_url: str) -> None:
    """The whole chain with the real component: reading → red warning → e-mails to the push
    recipients and the city relay, and the global webhook, by the running notifier."""
    with smtp_server() as (port, received):
        async with http_receiver() as rec:
            settings = warning_settings(
                tmp_path, db_url, smtp_host="127.0.0.1", smtp_port=port, webhooks=[rec.url("/w")]
            )
            settings.server.data_dir.mkdir(parents=True, exist_ok=True)
            db = Database(settings.database_url)
            db.open()
            tree = seed_tree(db)
            gas = {"h": 25.0, "hh": 50.0}
            pk = add_sensor(db, tree.enterprise_id, "GAS-9", "gas_combustible", gas, range_max=100)
            services = Services(settings, db, LocalObjectStore(settings.objects_path))
            component = WarningComponent(services)
            await component.start()
            try:
                from vms.ingest.points import PointRegistry, load_points

                registry = PointRegistry()
                with db.session() as s:
                    registry.replace(load_points(s))
                point = registry.by_pk[pk]
                component.engine.observe(point, SimClock(time.time()).at(), 75.0)
                want = {
                    EMAILS[d]
                    for d in (
                        Duty.emergency_bureau,
                        Duty.industry_regulator,
                        Duty.safety_dept,
                        Duty.hq,
                        Duty.monitoring_center,
                    )
                }

                def inboxes() -> set[str]:
                    return {to for env in received for to in env.rcpt_tos}

                await wait_until(lambda: inboxes() >= want, 20, "e-mails of the red warning")
                await wait_until(lambda: len(rec.bodies("/w")) >= 2, 20, "global webhook")
                kinds = sorted(b["kind"] for b in rec.bodies("/w"))
                assert kinds == ["warning.notice", "warning.opened"]
                assert inboxes() == want  # nobody else (the other enterprise's contact)
            finally:
                await component.stop()
                db.close()
