"""Device alarms in a real browser: a simulated NVR registers with the running server and
alarms (NOTIFY in the alarm subscription the server made); the enterprise user sees the
pop-up and the row in the Alarms page, resets it (ResetAlarm reaches the NVR), and another
enterprise sees none of it."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simdevice.nvr import NvrConfig, SimulatedNvr

from .live_media import CHANNEL_ID, DEVICE_ID
from .live_web import CHROMEDRIVER, CHROMIUM, WAIT_S, LiveNode, log_in, nav, wait_for

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)

ROW = "#device-alarms tr[data-device-alarm]"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path / "data")
    n.start()
    yield n
    n.stop()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch drivers
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _in_node(node: LiveNode, coro: Any, timeout: float = WAIT_S) -> Any:
    assert node.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, node.loop).result(timeout)


def test_device_alarm_pops_up_is_listed_and_reset(node: LiveNode, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sip = node.services.settings.sip
    nvr = SimulatedNvr(
        NvrConfig(
            device_id=DEVICE_ID,
            server_id=sip.server_id,
            server_domain=sip.domain,
            server_host="127.0.0.1",
            server_port=node.services.sip.port,
            password=sip.password,
            channel_ids=[CHANNEL_ID],
        )
    )
    _in_node(node, nvr.start(wait=True))
    try:
        driver = browser
        log_in(driver, node, "ent_a")
        wait_for(
            driver,
            lambda d: d.find_element(By.ID, "push-status").get_attribute("data-state") == "open",
            "the push channel",
        )
        wait_for(driver, lambda d: nvr.subscribers.has("Alarm"), "the alarm subscription")
        assert _in_node(node, nvr.send_alarm(CHANNEL_ID, priority=1, method=5, alarm_type=2)) == 200
        toast = wait_for(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, ".toast.device-alarm-toast"),
            "the device alarm pop-up",
        )[0]
        text = toast.get_attribute("textContent")  # still fading in: .text may be empty
        assert "运动目标检测" in text and CHANNEL_ID in text

        nav(driver, "alarms")
        row = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ROW), "the alarm row")[0]
        # the name the NVR's catalog gave the camera on registering
        assert "北门枪机" in row.text and "未复位" in row.text and "一级" in row.text
        row.find_element(By.CSS_SELECTOR, "button.act-reset").click()
        wait_for(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, ROW) == [],
            "the reset alarm to leave the not-reset list",
        )
        assert nvr.state.alarm_resets == [(CHANNEL_ID, "5", "2")]

        driver.find_element(By.ID, "logout").click()
        log_in(driver, None, "ent_b")
        nav(driver, "alarms")
        wait_for(
            driver,
            lambda d: "暂无设备报警" in d.find_element(By.ID, "device-alarms").text,
            "another enterprise's empty panel",
        )
    finally:
        _in_node(node, nvr.stop())
