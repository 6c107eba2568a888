"""The 管理 Admin view in a real browser (headless Chromium): an administrator creates a user
(the password policy's 422 shown in the form first), changes its role and disables it, each
checked in the database; a county administrator sees its subtree's users only and an
enterprise user no Admin view at all; the receivers panel counts the outbox as the database
does; the device view's 刷新目录 Refresh catalog shows the device's refusal (a device that never
registered) and, with the demo's simulated NVR, the catalog it answered."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.cluster_models import CameraLease, ClusterNode
from storage.models import Device, Organisation, OutboxItem, OutboxState, Role, User
from storage.passwords import hash_password
from vms.config import SipUpstreamSettings, UplinkReceiver

from .live_media import CHANNEL_ID, DEVICE_ID, OTHER_CHANNEL_ID, PASSWORD
from .live_web import CHROMEDRIVER, CHROMIUM, WAIT_S, LiveNode, js, log_in, nav, wait_for
from .sensor_web import chromium, screenshot

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)

RECEIVER = "province"
SUPERIOR = "34010000002000000001"
NEW_USER = "newbie"
GOOD_PASSWORD = "Valid-Passw0rd-9"

USERS = (
    "return [...document.querySelectorAll('#users tr[data-user]')].map(r => r.dataset.username);"
)
RECEIVER_ROW = """
const row = document.querySelector(`#receivers tr[data-receiver="${arguments[0]}"]`);
if (!row) return null;
const n = cls => Number(row.querySelector('td.' + cls).dataset.count);
return {pending: n('pending'), dead: n('dead'), sent: n('sent'), text: row.innerText};
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path / "data")
    # a receiver that is down: what it was sent stays pending, with the sender's error
    n.settings.uplink.receivers = [
        UplinkReceiver(name=RECEIVER, table4_url="http://127.0.0.1:9/table4", timeout_s=1)
    ]
    # a superior that never answers: listed, not registered
    n.settings.sip.upstreams = [
        SipUpstreamSettings(
            server_id=SUPERIOR, domain="3401000000", host="127.0.0.1", port=9, password="x" * 12
        )
    ]
    with n.services.db.session() as s:
        county = s.scalar(select(Organisation).where(Organisation.name == "测试县"))
        s.add(
            User(
                username="county_admin",
                password_hash=hash_password(PASSWORD),
                role=Role.admin,
                org_id=county.id,
            )
        )
        payload = {"ALARM_ID": n.alarm_id}

        def row(state: OutboxState, **kw: Any) -> OutboxItem:
            return OutboxItem(
                receiver=RECEIVER,
                table="table4",
                ordering_key="cam",
                payload=payload,
                state=state,
                **kw,
            )

        s.add_all(
            [
                row(OutboxState.pending),
                row(OutboxState.pending),
                row(OutboxState.dead, last_error="HTTP 500 省平台拒收"),
                *(row(OutboxState.sent) for _ in range(3)),
            ]
        )
    n.start()
    yield n
    n.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path, 1500, 1000) as driver:
        yield driver


def db_user(node: LiveNode, username: str) -> User | None:
    with node.services.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is not None:
            s.expunge(user)
        return user


def outbox_counts(node: LiveNode) -> dict[str, int]:
    with node.services.db.session() as s:
        rows = s.execute(
            select(OutboxItem.state, func.count())
            .where(OutboxItem.receiver == RECEIVER)
            .group_by(OutboxItem.state)
        ).all()
    counts = {"pending": 0, "dead": 0, "sent": 0}
    counts.update({state.value: n for state, n in rows})
    return counts


def user_row(driver: Any, username: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'#users tr[data-username="{username}"]')


def open_admin(driver: Any) -> None:
    """The Admin button shows once /api/auth/me named the role."""
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.CSS_SELECTOR, "#nav button[data-view=admin]")
    wait_for(driver, lambda d: button.is_displayed(), "the Admin button (after /me)")
    assert "管理" in button.text
    nav(driver, "admin")


def selection(node: LiveNode) -> dict[str, Any]:
    import httpx

    with httpx.Client(base_url=node.url) as c:
        r = c.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = c.get(f"/api/cascade/{SUPERIOR}/channels", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()


def open_selection(driver: Any) -> str:
    """The superior's channel dialog, loaded; returns its CSS selector."""
    from selenium.webdriver.common.by import By

    row = f'#superiors tr[data-upstream="{SUPERIOR}"]'
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the superior's row")
    driver.find_element(By.CSS_SELECTOR, f"{row} button.upstream-channels").click()
    dialog = f'dialog.cascade-dialog[data-upstream="{SUPERIOR}"]'
    wait_for(
        driver,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, f"{dialog} .cascade-row")
            or d.find_element(By.CSS_SELECTOR, f"{dialog} .cascade-error").text
        ),
        "the channel list",
    )
    return dialog


def log_out(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "logout").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "login-form").is_displayed(), "login form")


def test_admin_manages_users_sees_the_outbox_and_refreshes_a_catalog(
    node: LiveNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    log_in(driver, node, "admin")
    open_admin(driver)
    wait_for(driver, lambda d: "ent_a" in (js(d, USERS) or []), "the user list")
    assert {"admin", "operator", "ent_a", "ent_b", "county_admin"} <= set(js(driver, USERS))

    # a password the policy refuses: the 422 and its rule in the form, no user made
    with node.services.db.session() as s:
        ent_a_org = s.scalar(select(Organisation.id).where(Organisation.name == "甲化工"))
    form = driver.find_element(By.ID, "user-create")

    def create(password: str) -> None:
        for name, value in (("username", NEW_USER), ("password", password)):
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        Select(form.find_element(By.NAME, "role")).select_by_value("operator")
        Select(form.find_element(By.NAME, "org_id")).select_by_value(str(ent_a_org))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    create("Sh0rt!")
    error = By.ID, "user-create-error"
    wait_for(driver, lambda d: "422" in d.find_element(*error).text, "the policy's 422")
    assert "at least 10 characters" in driver.find_element(*error).text
    assert db_user(node, NEW_USER) is None
    screenshot(driver, "admin-password-refused", tmp_path)

    create(GOOD_PASSWORD)
    wait_for(driver, lambda d: NEW_USER in js(d, USERS), "the new user listed")
    assert not driver.find_element(*error).is_displayed()  # the old error is gone
    user = db_user(node, NEW_USER)
    assert user is not None and user.role == Role.operator and user.org_id == ent_a_org
    assert user.must_change_password and user.is_active
    assert (
        "须修改密码" in user_row(driver, NEW_USER).find_element(By.CSS_SELECTOR, ".user-state").text
    )

    # a second user of that name: the 409 in the form
    create(GOOD_PASSWORD)
    wait_for(driver, lambda d: "409" in d.find_element(*error).text, "the name's 409")

    # role change, saved from the row
    Select(
        user_row(driver, NEW_USER).find_element(By.CSS_SELECTOR, "select.user-role")
    ).select_by_value("enterprise")
    user_row(driver, NEW_USER).find_element(By.CSS_SELECTOR, "button.user-save").click()
    wait_for(driver, lambda d: db_user(node, NEW_USER).role == Role.enterprise, "the new role")
    wait_for(
        driver,
        lambda d: "已保存" in user_row(d, NEW_USER).find_element(By.CSS_SELECTOR, ".row-msg").text,
        "saved message",
    )

    # disable it: stored, shown, and its login refused
    user_row(driver, NEW_USER).find_element(By.CSS_SELECTOR, "button.user-toggle").click()
    wait_for(driver, lambda d: not db_user(node, NEW_USER).is_active, "disabled in the DB")
    wait_for(
        driver,
        lambda d: (
            "已停用" in user_row(d, NEW_USER).find_element(By.CSS_SELECTOR, ".user-state").text
        ),
        "disabled shown",
    )
    import httpx

    r = httpx.post(
        node.url + "api/auth/login", json={"username": NEW_USER, "password": GOOD_PASSWORD}
    )
    assert r.status_code in (401, 403), r.text

    # the admin cannot disable itself: the API's 422 in its own row
    user_row(driver, "admin").find_element(By.CSS_SELECTOR, "button.user-toggle").click()
    wait_for(
        driver,
        lambda d: "422" in user_row(d, "admin").find_element(By.CSS_SELECTOR, ".row-msg").text,
        "the self-disable 422",
    )
    assert db_user(node, "admin").is_active

    # the superior, not registered; receivers: what the database holds
    superior = driver.find_element(By.CSS_SELECTOR, f'#superiors tr[data-upstream="{SUPERIOR}"]')
    assert "未注册 not registered" in superior.text and "127.0.0.1:9" in superior.text
    deadline = time.monotonic() + WAIT_S
    while True:
        shown, stored = js(driver, RECEIVER_ROW, RECEIVER), outbox_counts(node)
        if shown and {k: shown[k] for k in stored} == stored or time.monotonic() > deadline:
            break
        driver.find_element(By.CSS_SELECTOR, "button.admin-refresh").click()
        time.sleep(0.5)
    assert shown is not None and {k: shown[k] for k in stored} == stored, (shown, stored)
    assert stored["pending"] >= 2 and stored["dead"] == 1 and stored["sent"] == 3
    assert "省平台拒收" in shown["text"]
    screenshot(driver, "admin-view", tmp_path)
    js(driver, "document.getElementById('superiors').scrollIntoView()")
    screenshot(driver, "admin-receivers", tmp_path)
    # the cluster panel: one node says so; a media node's row (as a scaled-out node writes
    # it) shows with its cameras after a refresh
    summary = driver.find_element(By.CSS_SELECTOR, ".cluster-summary").text
    assert "单节点 all-in-one" in summary and "unplaced" in summary
    now = datetime.now(UTC)
    with node.services.db.session() as s:
        s.add(ClusterNode(name="media-9", role="media", host="10.0.0.9", started_at=now,
                          heartbeat_at=now, load={"streams": 1}))  # fmt: skip
        s.add(CameraLease(kind="media", device_id=DEVICE_ID, channel_id=CHANNEL_ID,
                          node="media-9", since=now))  # fmt: skip
    driver.find_element(By.CSS_SELECTOR, "button.admin-refresh").click()
    media_row = wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#cluster-nodes tr[data-node="media-9"]'),
        "the media node in the cluster panel",
    )[0]
    assert "在线 alive" in media_row.text and "media 1" in media_row.text, media_row.text
    # the superior's channels: all at first; one chosen in the dialog, stored as chosen
    assert selection(node)["all_channels"] is True
    dialog = open_selection(driver)
    listed = js(
        driver,
        f"return [...document.querySelectorAll('{dialog} .cascade-row')]"
        ".map(r => r.dataset.channel)",
    )
    assert {CHANNEL_ID, OTHER_CHANNEL_ID} <= set(listed), listed
    every = driver.find_element(By.CSS_SELECTOR, f"{dialog} input.cascade-all")
    assert every.is_selected()
    box = f'{dialog} .cascade-row[data-channel="{CHANNEL_ID}"] input'
    assert not driver.find_element(By.CSS_SELECTOR, box).is_enabled()  # all: no single choice
    every.click()
    driver.find_element(By.CSS_SELECTOR, box).click()
    driver.find_element(By.CSS_SELECTOR, f"{dialog} button.cascade-save").click()
    wait_for(
        driver,
        lambda d: "已保存" in d.find_element(By.CSS_SELECTOR, f"{dialog} .cascade-saved").text,
        "the selection saved",
    )
    got = selection(node)
    assert got["all_channels"] is False and got["channel_ids"] == [CHANNEL_ID], got
    screenshot(driver, "admin-cascade-selection", tmp_path)
    driver.find_element(By.CSS_SELECTOR, f"{dialog} button.cascade-close").click()
    wait_for(
        driver,
        lambda d: (
            "选定 selected 1"
            in d.find_element(By.CSS_SELECTOR, f'#superiors tr[data-upstream="{SUPERIOR}"]').text
        ),
        "the row's new count",
    )
    assert not driver.find_elements(By.CSS_SELECTOR, dialog)

    # re-send the dead letter: pending again in the database, said in the panel
    row = f'#receivers tr[data-receiver="{RECEIVER}"]'
    driver.find_element(By.CSS_SELECTOR, f"{row} button.receiver-resend").click()
    wait_for(driver, lambda d: outbox_counts(node)["dead"] == 0, "the dead letter requeued")
    wait_for(
        driver,
        lambda d: "已重新排队 requeued 1" in d.find_element(By.ID, "receivers-msg").text,
        "msg",
    )

    # the devices view: registration, transport, keepalive; a catalog refresh the never
    # registered device cannot answer is shown as the API's refusal
    nav(driver, "devices")
    device = f'li.device[data-device="{DEVICE_ID}"]'
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, device), "the device tree")
    meta = driver.find_element(By.CSS_SELECTOR, f"{device} .device-meta")
    assert "已接入" in meta.text and "传输 transport UDP" in meta.text
    meta.find_element(By.CSS_SELECTOR, "button.catalog-refresh").click()
    result = f"{device} .catalog-result"
    wait_for(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, result).get_attribute("data-ok") == "0",
        "the refresh's refusal",
    )
    assert "刷新失败" in driver.find_element(By.CSS_SELECTOR, result).text
    log_out(driver)

    # a county administrator: its subtree's users, not the global admin
    log_in(driver, None, "county_admin")
    open_admin(driver)
    wait_for(driver, lambda d: "ent_a" in (js(d, USERS) or []), "the county's users")
    assert "admin" not in js(driver, USERS) and "county_admin" in js(driver, USERS)
    # it sees the superior's selection (its subtree's part) but may not change it: the 403
    dialog = open_selection(driver)
    assert driver.find_element(
        By.CSS_SELECTOR, f'{dialog} .cascade-row[data-channel="{CHANNEL_ID}"] input'
    ).is_selected()
    driver.find_element(By.CSS_SELECTOR, f"{dialog} button.cascade-save").click()
    wait_for(
        driver,
        lambda d: "403" in d.find_element(By.CSS_SELECTOR, f"{dialog} .cascade-error").text,
        "the county administrator's 403",
    )
    assert (
        "global administrator"
        in driver.find_element(By.CSS_SELECTOR, f"{dialog} .cascade-error").text
    )
    assert selection(node)["channel_ids"] == [CHANNEL_ID]
    driver.find_element(By.CSS_SELECTOR, f"{dialog} button.cascade-close").click()
    log_out(driver)

    # an enterprise user: no Admin view, not even through the address
    log_in(driver, None, "ent_a")
    wait_for(driver, lambda d: "enterprise" in d.find_element(By.ID, "who").text, "/me answered")
    assert not driver.find_element(By.CSS_SELECTOR, "#nav button[data-view=admin]").is_displayed()
    driver.execute_script("location.hash = '#admin'")
    wait_for(driver, lambda d: js(d, "return location.hash") == "#live", "sent back to live")
    assert not driver.find_element(By.ID, "view-admin").is_displayed()


def test_refresh_catalog_shows_what_the_simulated_nvr_answered(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    node = LiveNode(tmp_path / "demo", demo=True)
    node.start()
    try:
        deadline = time.monotonic() + WAIT_S
        device_id = ""
        while not device_id and time.monotonic() < deadline:  # the demo NVR registers
            with node.services.db.session() as s:
                device_id = s.scalar(select(Device.device_id).where(Device.online)) or ""
            time.sleep(0.2)
        assert device_id, "the simulated NVR never registered"
        driver = browser
        log_in(driver, node, "admin")
        nav(driver, "devices")
        device = f'li.device[data-device="{device_id}"]'
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, device), "the device")
        driver.find_element(By.CSS_SELECTOR, f"{device} button.catalog-refresh").click()
        result = f"{device} .catalog-result"
        wait_for(
            driver,
            lambda d: (
                d.find_element(By.CSS_SELECTOR, result).get_attribute("data-ok") in ("0", "1")
            ),
            "the refresh's answer",
        )
        text = driver.find_element(By.CSS_SELECTOR, result).text
        assert driver.find_element(By.CSS_SELECTOR, result).get_attribute("data-ok") == "1", text
        assert "目录已刷新" in text and "2 通道 channels" in text
        channels = driver.find_elements(By.CSS_SELECTOR, f"{device} li.channel")
        assert len(channels) == 2
        meta = driver.find_element(By.CSS_SELECTOR, f"{device} .device-meta").text
        assert "注册 registered" in meta and "心跳 keepalive" in meta
        screenshot(driver, "admin-device-catalog", tmp_path)
    finally:
        node.stop()
