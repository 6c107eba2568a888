"""The web UI in a real browser: headless Chromium logs in, plays a camera on the live wall over
WebRTC (decoded by Chromium), sees the device tree and an alarm, and is scoped like the API."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from analyzers.events import AlarmEvent, AlarmStatus
from sip.channel_ref import ChannelRef
from storage.models import Alarm, Channel, Device

from .live_media import CAMERA, CHANNEL_ID, HEIGHT, OTHER_CAMERA, OTHER_CHANNEL_ID, WIDTH
from .live_web import (
    ALARM_ROW,
    CHROMEDRIVER,
    CHROMIUM,
    SEGMENT_S,
    TOAST,
    VIDEO_STATE,
    WAIT_S,
    LiveNode,
    log_in,
    nav,
    snapshot_jpeg,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path / "data")
    n.start()
    yield n
    n.stop()
    assert not n._thread.is_alive()
    assert n.services.live is not None and n.services.live.sessions == {}


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
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,800",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def test_operator_watches_live_wall_and_alarms(
    node: LiveNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    log_in(driver, node, "operator")

    # Live wall (the default view): put the camera on tile 1 and let Chromium decode it.
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".tile select option"), "tiles")
    Select(driver.find_element(By.CSS_SELECTOR, '.tile[data-index="0"] select')).select_by_value(
        str(CAMERA)  # the UI names a camera "device/channel"
    )
    state = wait_for(
        driver,
        lambda d: (s := d.execute_script(VIDEO_STATE)) and s["ready"] >= 2 and s["w"] > 0 and s,
        "WebRTC video to decode in Chromium",
    )
    assert (state["w"], state["h"]) == (WIDTH, HEIGHT)
    wait_for(driver, lambda d: d.execute_script(VIDEO_STATE)["t"] > 0.5, "video time to advance")
    status = driver.find_element(By.CSS_SELECTOR, '.tile[data-index="0"] .tile-status')
    assert status.get_attribute("data-state") == "connected"
    sessions = node.services.live.sessions
    assert len(sessions) == 1 and next(iter(sessions.values())).track.units > 10

    driver.find_element(By.CSS_SELECTOR, "button[data-layout='9']").click()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#wall .tile")) == 9
    assert driver.execute_script(VIDEO_STATE)["w"] == WIDTH  # tile 1 kept playing

    # An alarm committed by the alarm service pops up over the wall (WebSocket push).
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, "push-status").get_attribute("data-state") == "open",
        "the alarm push channel",
    )
    event = AlarmEvent(
        alarm_id=str(uuid.uuid4()),
        status=AlarmStatus.alarm,
        channel_id=OTHER_CHANNEL_ID,  # the gas station's camera, not on the wall yet
        profile="gas_station",
        rule="smoking",
        alarm_type="7",
        at=datetime.now(UTC),
        snapshot_jpeg=snapshot_jpeg("SMOKING"),
    )
    asyncio.run_coroutine_threadsafe(node.services.alarms.handle(event), node.loop).result(15)
    toast = wait_for(
        driver,
        lambda d: (t := d.execute_script(TOAST, event.alarm_id)) and t["thumb"] > 0 and t,
        "the alarm pop-up with its snapshot",
    )
    assert OTHER_CHANNEL_ID in toast["text"] and "确认 Ack" in toast["text"]
    # 报警联动: the alarm's camera comes onto the first free tile; tile 1 keeps playing.
    wait_for(
        driver,
        lambda d: (
            d.execute_script(
                "return document.querySelector('.tile[data-index=\"1\"] select').value"
            )
            == str(OTHER_CAMERA)
        ),
        "the alarm's camera to come onto the wall",
    )
    assert driver.execute_script(VIDEO_STATE)["w"] == WIDTH
    wait_for(driver, lambda d: d.execute_script(TOAST, event.alarm_id)["opacity"] == "1", "pop-up")
    driver.save_screenshot(str(tmp_path / "live-wall.png"))

    # Device tree: organisations, devices with online status, cameras.
    nav(driver, "devices")
    tree = wait_for(driver, lambda d: d.find_elements(By.ID, "device-tree"), "device tree")[0]
    wait_for(driver, lambda d: "甲化工" in tree.text and "乙加油站" in tree.text, "org names")
    assert "在线 online" in tree.text
    assert driver.find_elements(By.CSS_SELECTOR, f'li.channel[data-channel="{CHANNEL_ID}"]')

    # Alarms: the alarm inserted in the DB is listed with its type and camera.
    nav(driver, "alarms")
    row = wait_for(
        driver,
        lambda d: (r := d.execute_script(ALARM_ROW, node.alarm_id)) and r["thumb"] > 0 and r,
        "the alarm row with its snapshot thumbnail",
    )
    assert CHANNEL_ID in row["text"] and "待确认 new" in row["handling"]
    assert driver.execute_script(ALARM_ROW, event.alarm_id), "the pushed alarm is listed too"
    driver.execute_script(
        f"document.querySelector('tr[data-alarm=\"{node.alarm_id}\"] button.act-acknowledge')"
        ".click()"
    )
    wait_for(
        driver,
        lambda d: "已确认 acknowledged" in d.execute_script(ALARM_ROW, node.alarm_id)["handling"],
        "the alarm to be acknowledged",
    )
    with node.services.db.session() as s:
        assert (
            s.scalar(select(Alarm).where(Alarm.alarm_id == node.alarm_id)).handling
            == "acknowledged"
        )
    driver.save_screenshot(str(tmp_path / "alarms.png"))

    # Replay view: the vendored hls.js loads and supports this browser (MSE).
    nav(driver, "replay")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".timeline-bar"), "replay timeline")
    supported = driver.execute_async_script(
        "const done = arguments[0]; const s = document.createElement('script');"
        "s.src = '/static/vendor/hls.min.js'; s.onload = () => done(Hls.isSupported());"
        "s.onerror = () => done('load failed'); document.head.append(s);"
    )
    assert supported is True

    # Leaving the page hangs up: the server closes the peer.
    driver.get("about:blank")
    wait_for(driver, lambda d: not node.services.live.sessions, "server to close the peer", 10)


def test_enterprise_user_sees_only_its_own_camera(node: LiveNode, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    options = "return [...document.querySelectorAll('.tile select option')].map(o => o.value)"
    log_in(driver, node, "operator")
    wait_for(driver, lambda d: str(CAMERA) in d.execute_script(options), "operator's cameras")
    driver.find_element(By.ID, "logout").click()
    log_in(driver, None, "ent_b")  # same page, no reload: nothing of the operator's may remain
    wait_for(driver, lambda d: str(OTHER_CAMERA) in d.execute_script(options), "own cameras")
    assert str(CAMERA) not in driver.execute_script(options)
    nav(driver, "devices")
    tree = wait_for(driver, lambda d: d.find_elements(By.ID, "device-tree"), "device tree")[0]
    wait_for(driver, lambda d: "乙加油站" in tree.text, "own organisation")
    assert "甲化工" not in tree.text
    assert not driver.find_elements(By.CSS_SELECTOR, f'li.channel[data-channel="{CHANNEL_ID}"]')
    assert driver.find_elements(By.CSS_SELECTOR, f'li.channel[data-channel="{OTHER_CHANNEL_ID}"]')
    status = driver.execute_async_script(
        "const done = arguments[0];"
        f"fetch('/api/live/{CHANNEL_ID}/offer', {{method: 'POST',"
        " headers: {'Content-Type': 'application/json',"
        " Authorization: 'Bearer ' + sessionStorage.getItem('token')},"
        " body: JSON.stringify({type: 'offer', sdp: 'v=0 m=video'})}).then(r => done(r.status));"
    )
    assert status == 404
    nav(driver, "alarms")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#alarms tr"), "alarms table")
    assert not driver.find_elements(By.CSS_SELECTOR, f'tr[data-alarm="{node.alarm_id}"]')

    # The tree's live button puts its camera on the wall; no frames yet, so it waits for video.
    nav(driver, "devices")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "li.channel button"), "buttons")
    driver.execute_script(
        f"document.querySelector('li.channel[data-channel=\"{OTHER_CHANNEL_ID}\"] button').click()"
    )
    tile = '.tile[data-index="0"]'
    wait_for(
        driver,
        lambda d: d.execute_script(
            f"const t = document.querySelector('{tile}');"
            "return t && t.querySelector('select').value === arguments[0] &&"
            " t.querySelector('.tile-status').dataset.state === 'connected'",
            str(OTHER_CAMERA),
        ),
        "the tree's camera to connect on the wall",
    )
    assert "等待画面" in driver.find_element(By.CSS_SELECTOR, f"{tile} .tile-status").text
    assert [s.channel_id for s in node.services.live.sessions.values()] == [OTHER_CHANNEL_ID]

    driver.find_element(By.ID, "logout").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "login-form").is_displayed(), "login form")
    wait_for(driver, lambda d: not node.services.live.sessions, "log-out to hang up", 10)


REPLAY_STATE = """
const v = document.getElementById('replay-video');
const clock = document.querySelector('.replay-view .clock').textContent;
return {ready: v.readyState, w: v.videoWidth, t: v.currentTime,
        at: clock ? new Date(clock.replace(' ', 'T')).getTime() : 0,
        info: document.querySelector('.replay-view p.muted').textContent};
"""

CLICK_TIMELINE = """
const bar = document.querySelector('.timeline-bar'), r = bar.getBoundingClientRect();
bar.dispatchEvent(new MouseEvent('click', {bubbles: true,
  clientX: r.left + arguments[0] * r.width, clientY: r.top + r.height / 2}));
"""


def test_replay_plays_recordings_and_seeks_on_the_timeline(
    node: LiveNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    log_in(driver, node, "operator")
    nav(driver, "devices")
    wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, f'li.channel[data-channel="{CHANNEL_ID}"]'),
        "the camera in the device tree",
    )
    driver.execute_script(
        f"document.querySelector('li.channel[data-channel=\"{CHANNEL_ID}\"] button:last-child')"
        ".click()"
    )
    (a_start, a_end), (b_start, b_end) = node.recorded
    ms = lambda t: t.timestamp() * 1000  # noqa: E731
    state = wait_for(
        driver,
        lambda d: (s := d.execute_script(REPLAY_STATE)) and s["w"] > 0 and s["at"] > 0 and s,
        "the recording to play through hls.js",
    )
    assert "片段 ranges: 2" in state["info"] and state["w"] == WIDTH
    assert ms(a_start) - 1000 <= state["at"] <= ms(a_end) + 1000  # starts at the first range

    # Seek: a 1 h window, click the middle of the second segment, playback jumps there.
    Select(
        driver.find_element(By.CSS_SELECTOR, ".replay-view select[aria-label^='时长']")
    ).select_by_value("1")
    wait_for(driver, lambda d: d.execute_script(REPLAY_STATE)["ready"] >= 2, "replay reload")
    start_ms, end_ms = driver.execute_script(
        "const b = document.querySelector('.timeline-bar').dataset;"
        "return [new Date(b.start).getTime(), new Date(b.end).getTime()]"
    )
    assert end_ms - start_ms == 3600 * 1000
    middle = ms(b_start) + SEGMENT_S * 500
    frac = (middle - start_ms) / (end_ms - start_ms)
    assert 0 < frac < 1
    driver.execute_script(CLICK_TIMELINE, frac)
    state = wait_for(
        driver,
        lambda d: (
            (s := d.execute_script(REPLAY_STATE))
            and s["ready"] >= 2
            and ms(b_start) - 1000 <= s["at"] <= ms(b_end) + 1000
            and s
        ),
        "playback to jump to the second segment",
    )
    driver.save_screenshot(str(tmp_path / "replay.png"))


def test_demo_nvr_camera_plays_in_chromium_through_sip_rtp_and_webrtc(
    tmp_path: Path, browser: Any
) -> None:
    """The whole product path: simulated NVR registers (SIP) → catalog → the wall asks for a
    camera → INVITE → PS over RTP → hub → WebRTC passthrough → Chromium decodes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    node = LiveNode(tmp_path / "data", demo=True)
    node.start()
    try:
        channel_id = ""
        deadline = time.monotonic() + WAIT_S
        while not channel_id and time.monotonic() < deadline:  # register + Catalog over SIP
            with node.services.db.session() as s:
                row = s.execute(
                    select(Device.device_id, Channel.channel_id)
                    .select_from(Channel)
                    .join(Device, Channel.device_pk == Device.id)
                    .order_by(Channel.channel_id)
                ).first()
            if row is not None:
                camera = ChannelRef(*row)
                channel_id = str(camera)  # the UI's key: "device/channel"
            time.sleep(0.1)
        assert channel_id, "the simulated NVR's catalog never arrived"
        driver = browser
        log_in(driver, node, "admin")
        tile_select = '.tile[data-index="0"] select'
        wait_for(
            driver,
            lambda d: d.find_elements(
                By.CSS_SELECTOR, f'{tile_select} option[value="{channel_id}"]'
            ),
            "the demo camera in the wall's camera list",
        )
        Select(driver.find_element(By.CSS_SELECTOR, tile_select)).select_by_value(channel_id)
        state = wait_for(
            driver,
            lambda d: (s := d.execute_script(VIDEO_STATE)) and s["ready"] >= 2 and s["w"] > 0 and s,
            "the demo camera to play in Chromium",
        )
        assert state["w"] > 0 and state["h"] > 0
        info = wait_for(
            driver,
            lambda d: "kb/s" in (t := d.find_element(By.CSS_SELECTOR, ".tile-info").text) and t,
            "the tile to show the hub's stream figures",
        )
        assert info.startswith(f"{state['w']}×{state['h']} · ") and " fps " in info
        stats = node.services.media.stats(camera)
        assert stats["state"] == "receiving" and stats["codec"] == "h264"
        assert (stats["resolution"][0], stats["resolution"][1]) == (state["w"], state["h"])
        driver.save_screenshot(str(tmp_path / "demo-wall.png"))
    finally:
        node.stop()
