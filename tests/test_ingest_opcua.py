"""OPC UA collector against a real asyncua server with a user manager: subscriptions,
timestamps and status codes, unknown nodes, a wrong password, a server restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from storage.db import Database
from vms.ingest.collectors.opcua import as_number, quality_of, sample_time

from .ingest_support import Site, add_gateway, add_sensor, free_port, running_ingest
from .ingest_support import wait_until as wait

USER, PASSWORD = "dcs-reader", "s3cret-Pw"


class Users:
    """asyncua user manager: one operator with a password, nobody else."""

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, **_: Any
    ) -> User | None:
        if (username, password) == (USER, PASSWORD):
            return User(role=UserRole.User)
        return None


VARIABLES: dict[str, tuple[Any, ua.VariantType]] = {
    "Tank1.Level": (7.25, ua.VariantType.Double),
    "Tank1.Pressure": (0.42, ua.VariantType.Float),
    "Rack.Grounding": (False, ua.VariantType.Boolean),
    "Unit.Counter": (12, ua.VariantType.Int32),
}


class UaServer:
    """An OPC UA server with the variables above; a restart builds a fresh one on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/vms/"
        self.server: Server | None = None
        self.nodes: dict[str, Any] = {}
        self.ns = 0

    async def start(self) -> None:
        server = Server(user_manager=Users())
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.UserNameIdentityToken])
        self.ns = await server.register_namespace("urn:test:plant")
        plant = await server.nodes.objects.add_object(self.ns, "Plant")
        for name, (value, vtype) in VARIABLES.items():
            node = await plant.add_variable(
                ua.NodeId(name, self.ns), name, ua.Variant(value, vtype)
            )
            self.nodes[name] = node
        await server.start()
        self.server = server

    async def write(
        self,
        name: str,
        value: Any,
        status: int = ua.StatusCodes.Good,
        source_ts: datetime | None = None,
    ) -> None:
        vtype = VARIABLES[name][1]
        variant = ua.Variant(None if value is None else value, vtype)
        dv = ua.DataValue(variant, StatusCode=ua.StatusCode(status), SourceTimestamp=source_ts)
        await self.nodes[name].write_value(dv)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


def node_id(ns: int, name: str) -> str:
    return f"ns={ns};s={name}"


TAGS = {
    "LT-1": "Tank1.Level",
    "PT-1": "Tank1.Pressure",
    "ES-1": "Rack.Grounding",
    "CT-1": "Unit.Counter",
}


def seed_points(
    server: UaServer, password: str = PASSWORD, extra: dict[str, str] | None = None
) -> tuple[list[int], Any]:
    ids: list[int] = []

    def seed(db: Database, site: Site) -> None:
        config = {
            "endpoint": server.endpoint,
            "username": USER,
            "password": password,
            "publish_interval_ms": 100,
        }
        gw = add_gateway(db, site.enterprise_id, "opcua", config, name="DCS OPC")
        ids.append(gw)
        for tag, name in TAGS.items():
            add_sensor(db, site.enterprise_id, gw, tag, {"node_id": node_id(server.ns, name)})
        for tag, nid in (extra or {}).items():
            add_sensor(db, site.enterprise_id, gw, tag, {"node_id": nid})

    return ids, seed


def test_status_codes_timestamps_and_numbers() -> None:
    assert quality_of(ua.StatusCode(ua.StatusCodes.Good)) == 0
    assert quality_of(ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)) == 2
    assert quality_of(ua.StatusCode(ua.StatusCodes.BadSensorFailure)) is None
    then = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        sample_time(ua.DataValue(SourceTimestamp=then, ServerTimestamp=then + timedelta(1))) == then
    )
    assert sample_time(ua.DataValue(ServerTimestamp=then.replace(tzinfo=None))) == then
    assert abs(sample_time(ua.DataValue()) - datetime.now(UTC)) < timedelta(seconds=5)
    assert (as_number(True), as_number(3), as_number(2.5)) == (1.0, 3.0, 2.5)
    assert as_number("7") is None and as_number(float("nan")) is None


async def test_opcua_subscription_turns_changes_into_readings(tmp_path: Path) -> None:
    server = UaServer()
    await server.start()
    ids, seed = seed_points(
        server, extra={"XX-UNKNOWN": "ns=2;s=No.Such.Node", "XX-MALFORMED": "ns=two;s=x"}
    )
    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            [gw] = ids
            # The initial values of every known node arrive with the subscription.
            await rig.wait_value("LT-1", lambda v: v == pytest.approx(7.25))
            await rig.wait_value("PT-1", lambda v: v == pytest.approx(0.42))
            await rig.wait_value("ES-1", lambda v: v == 0.0)
            await rig.wait_value("CT-1", lambda v: v == 12)
            error = await wait(lambda: rig.gateway(gw).last_error, 10, "point errors")
            assert "XX-UNKNOWN: cannot subscribe to ns=2;s=No.Such.Node: BadNodeIdUnknown" in error
            assert "XX-MALFORMED: bad node id" in error
            assert rig.gateway(gw).online
            # Changes, with the server's source timestamp.
            # (a second ahead of ours, so that it is newer than the initial value)
            stamp = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
            await server.write("Tank1.Level", 8.5, source_ts=stamp)
            [row] = await rig.wait_value("LT-1", lambda v: v == pytest.approx(8.5))
            assert row[0].replace(tzinfo=UTC) == stamp and row[2] == 0
            await server.write("Rack.Grounding", True)
            await rig.wait_value("ES-1", lambda v: v == 1.0)
            # Uncertain: stored as quality 2.  Bad: skipped and named as the point's error.
            await server.write("Unit.Counter", 13, status=ua.StatusCodes.UncertainLastUsableValue)
            rows = await rig.wait_value("CT-1", lambda v: v == 13)
            assert rows[-1][2] == 2
            await server.write("Unit.Counter", 99, status=ua.StatusCodes.BadSensorFailure)
            await wait(
                lambda: "CT-1: server reports BadSensorFailure" in rig.gateway(gw).last_error,
                10,
                "the bad status as the point's error",
            )
            await server.write("Unit.Counter", 14)
            await rig.wait_value("CT-1", lambda v: v == 14)
            assert [r for r in rig.readings("CT-1") if r[1] == 99] == []
            await wait(lambda: "CT-1" not in rig.gateway(gw).last_error, 10, "error cleared")
            assert rig.sensor("LT-1").online
    finally:
        await server.stop()


async def test_opcua_wrong_password_is_a_clear_gateway_error(tmp_path: Path) -> None:
    server = UaServer()
    await server.start()
    ids, seed = seed_points(server, password="wrong")
    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            [gw] = ids
            error = await wait(lambda: rig.gateway(gw).last_error, 20, "a login error")
            assert f"login refused for user {USER!r}" in error
            assert "BadUserAccessDenied" in error
            assert not rig.gateway(gw).online
            assert rig.readings("LT-1") == []
    finally:
        await server.stop()


async def test_opcua_server_restart_goes_offline_and_resubscribes(tmp_path: Path) -> None:
    server = UaServer()
    await server.start()
    ids, seed = seed_points(server)
    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            [gw] = ids
            await rig.wait_value("LT-1", lambda v: v == pytest.approx(7.25))
            await server.stop()
            await wait(lambda: not rig.gateway(gw).online, 30, "gateway offline")
            assert rig.gateway(gw).last_error
            await wait(lambda: rig.events("LT-1", "offline"), 10, "points offline")
            assert not rig.sensor("PT-1").online
            await server.start()
            await wait(lambda: rig.gateway(gw).online, 30, "gateway online again")
            await server.write("Tank1.Level", 11.0)
            await rig.wait_value("LT-1", lambda v: v == pytest.approx(11.0))
            await wait(lambda: rig.sensor("LT-1").online, 10, "point online again")
            assert [e.kind for e in rig.events("LT-1")][-2:] == ["offline", "online"]
    finally:
        await server.stop()
