"""The replay view's controls in a real browser (headless Chromium): our own recordings (HLS)
paused, sped up and moved; the NVR's recording (GB28181 Playback over WebRTC) paused,
resumed, sped up and seeked with the MANSRTSP commands checked on the simulated NVR; and
the downloads panel queuing an MP4 and fetching it."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import Channel, Device

from .live_media import CHANNEL_ID
from .live_web import CHROMEDRIVER, CHROMIUM, WAIT_S, LiveNode, log_in, nav, wait_for

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)

REPLAY = """
const v = document.getElementById('replay-video');
const view = document.querySelector('.replay-view');
const clock = view.querySelector('.clock').textContent;
const active = view.querySelector('.replay-speed.active');
return {ready: v.readyState, w: v.videoWidth, t: v.currentTime, paused: v.paused,
        rate: v.playbackRate, playback: view.dataset.playback || '',
        pause: view.querySelector('.replay-pause').dataset.paused,
        speed: active ? Number(active.dataset.speed) : 0,
        at: clock ? new Date(clock.replace(' ', 'T')).getTime() : 0,
        info: view.querySelector('p.muted').textContent};
"""

CLICK_TIMELINE = """
const bar = document.querySelector('.timeline-bar'), r = bar.getBoundingClientRect();
bar.dispatchEvent(new MouseEvent('click', {bubbles: true,
  clientX: r.left + arguments[0] * r.width, clientY: r.top + r.height / 2}));
"""

DOWNLOADS = """
return [...document.querySelectorAll('#downloads tr[data-download]')].map(r => ({
  id: r.dataset.download, state: r.dataset.state, text: r.innerText,
  href: (r.querySelector('a.download-file') || {}).href || ''}));
"""

FETCH = """
const done = arguments[1];
fetch(arguments[0]).then(async r => done({status: r.status, type: r.headers.get('content-type'),
  size: (await r.arrayBuffer()).byteLength})).catch(e => done({error: String(e)}));
"""


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch drivers
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}",
        "--window-size=1280,1000",
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


def click(driver: Any, css: str) -> None:
    driver.execute_script(f"document.querySelector({css!r}).click()")


def state(driver: Any) -> dict[str, Any]:
    return driver.execute_script(REPLAY)


def open_replay(driver: Any, node: LiveNode) -> None:
    """Log in as the operator and open the camera's replay from the device tree."""
    from selenium.webdriver.common.by import By

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


def test_recorded_replay_pauses_speeds_jumps_and_downloads(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    node = LiveNode(tmp_path / "data")
    node.start()
    try:
        driver = browser
        open_replay(driver, node)
        wait_for(driver, lambda d: (s := state(d))["w"] > 0 and s["t"] > 0.3, "HLS to play")
        assert state(driver)["speed"] == 1

        click(driver, '.replay-speed[data-speed="2"]')
        wait_for(driver, lambda d: state(d)["rate"] == 2 and state(d)["speed"] == 2, "2× in hls")
        click(driver, ".replay-pause")
        s = wait_for(driver, lambda d: (s := state(d))["paused"] and s, "the video to pause")
        assert (
            s["pause"] == "1"
            and "Resume" in driver.find_element(By.CSS_SELECTOR, ".replay-pause").text
        )
        time.sleep(0.5)
        assert state(driver)["t"] == s["t"]  # paused: the position holds
        click(driver, ".replay-pause")
        wait_for(
            driver, lambda d: (n := state(d)) and not n["paused"] and n["t"] > s["t"], "resume"
        )

        (a_start, a_end), _ = node.recorded
        before = state(driver)["at"]
        click(driver, ".replay-forward")  # +30 s: from the first recording into the second
        wait_for(
            driver,
            lambda d: (n := state(d))["ready"] >= 2 and n["at"] > before + 25_000,
            "the +30 s jump",
        )
        assert state(driver)["rate"] == 2  # the speed survives a new playlist

        # The downloads panel: our recording exported into an MP4 and fetched.
        from_ms = a_start.timestamp() * 1000
        driver.execute_script(
            "const p = document.querySelector('.downloads');"
            "const local = ms => new Date(ms - new Date(ms).getTimezoneOffset() * 60000)"
            ".toISOString().slice(0, 19);"
            "p.querySelector('.download-from').value = local(arguments[0]);"
            "p.querySelector('.download-to').value = local(arguments[0] + 10000);"
            "p.querySelector('.download-create').click();",
            from_ms,
        )
        rows = wait_for(
            driver,
            lambda d: (r := d.execute_script(DOWNLOADS)) and r[0]["state"] == "done" and r,
            "the download to finish in the panel",
        )
        assert "本地 recorded" in rows[0]["text"] and rows[0]["href"]
        got = driver.execute_async_script(FETCH, rows[0]["href"])
        assert got["status"] == 200 and got["type"] == "video/mp4" and got["size"] > 1000
    finally:
        node.stop()


def test_nvr_replay_is_controlled_on_the_device(tmp_path: Path, browser: Any) -> None:
    """Demo set-up: the simulated NVR registers; the replay view plays its own recording."""
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
            channel_id = f"{row[0]}/{row[1]}" if row else ""  # the UI's key: device/channel
            time.sleep(0.1)
        assert channel_id
        nvr = next(c for c in node.app.components if c.name == "demo-nvrs").nvrs[0]
        heard = lambda: [body for _, body in nvr.media.rtsp]  # noqa: E731
        driver = browser
        log_in(driver, node, "admin")
        nav(driver, "replay")
        wait_for(
            driver,
            lambda d: d.find_elements(
                By.CSS_SELECTOR, f'.replay-view option[value="{channel_id}"]'
            ),
            "the demo camera in the replay view",
        )
        Select(
            driver.find_element(By.CSS_SELECTOR, ".replay-view select[aria-label^='摄像机']")
        ).select_by_value(channel_id)
        Select(driver.find_element(By.CSS_SELECTOR, ".replay-source")).select_by_value("device")
        s = wait_for(
            driver,
            lambda d: (s := state(d))["playback"] and s["ready"] >= 2 and s["w"] > 0 and s,
            "the NVR's recording to play over WebRTC",
        )
        assert "设备录像 on the NVR" in s["info"]
        playback = node.services.playback.sessions[s["playback"]]

        click(driver, '.replay-speed[data-speed="4"]')
        wait_for(driver, lambda d: playback.scale == 4.0, "4× on the server")
        assert "Scale: 4.000000" in heard()[-1]
        click(driver, ".replay-pause")
        wait_for(driver, lambda d: playback.paused and state(d)["pause"] == "1", "pause")
        assert heard()[-1].startswith("PAUSE RTSP/1.0")
        click(driver, ".replay-pause")
        wait_for(driver, lambda d: not playback.paused and state(d)["pause"] == "0", "resume")
        assert "Range: npt=now-" in heard()[-1]

        # A click on the timeline inside the playing range seeks on the device.
        start_ms, end_ms = driver.execute_script(
            "const b = document.querySelector('.timeline-bar').dataset;"
            "return [new Date(b.start).getTime(), new Date(b.end).getTime()]"
        )
        target_ms = start_ms + (end_ms - start_ms) * 0.5
        driver.execute_script(CLICK_TIMELINE, 0.5)
        wait_for(
            driver, lambda d: "Range: npt=" in heard()[-1] and "now" not in heard()[-1], "seek"
        )
        offset = float(heard()[-1].split("Range: npt=")[1].split("-")[0])
        expected = (target_ms - playback.start.timestamp() * 1000) / 1000
        assert abs(offset - expected) < 30  # the click's pixel, in seconds of a 6 h window
        wait_for(
            driver,
            lambda d: abs(state(d)["at"] - target_ms) < 60_000,
            "the clock to follow the seek",
        )
        assert state(driver)["playback"] == playback.id  # the same session, no new INVITE
        driver.save_screenshot(str(tmp_path / "replay-nvr.png"))

        # The downloads panel fetches a range from the NVR at ×8 (s=Download).
        driver.execute_script(
            "const p = document.querySelector('.downloads');"
            "const local = ms => new Date(ms - new Date(ms).getTimezoneOffset() * 60000)"
            ".toISOString().slice(0, 19);"
            "p.querySelector('.download-from').value = local(arguments[0]);"
            "p.querySelector('.download-to').value = local(arguments[0] + 4000);"
            "p.querySelector('.download-speed').value = '8';"
            "p.querySelector('.download-create').click();",
            start_ms + 60_000,
        )
        rows = wait_for(
            driver,
            lambda d: (r := d.execute_script(DOWNLOADS)) and r[0]["state"] == "done" and r,
            "the NVR download to finish in the panel",
        )
        assert "设备 NVR ×8" in rows[0]["text"] and rows[0]["href"]
        got = driver.execute_async_script(FETCH, rows[0]["href"])
        assert got["status"] == 200 and got["type"] == "video/mp4" and got["size"] > 1000
        assert "a=downloadspeed:8" in nvr.state.invites[-1].body.decode()

        # Leaving the page hangs the viewer up; the session is closed after it.
        driver.get("about:blank")
        wait_for(driver, lambda d: not node.services.live.sessions, "the viewer to hang up", 10)
    finally:
        node.stop()


MARKS = """
const bar = document.querySelector('.timeline-bar');
return {alarms: [...bar.querySelectorAll('.alarm-mark')].map(m => ({id: m.dataset.alarm,
          at: m.dataset.at, left: parseFloat(m.style.left)})),
        gaps: [...bar.querySelectorAll('.span.gap')].map(g => [g.dataset.start, g.dataset.end]),
        counted: bar.dataset.alarms};
"""


def test_alarm_markers_on_the_timeline_play_from_just_before_the_alarm(
    tmp_path: Path, browser: Any
) -> None:
    """The camera's alarms in the window (active or cleared) are markers on the timeline, the
    other camera's are not; the break between the two recordings shows as a gap; a click on a
    marker plays from a few seconds before its alarm."""
    from selenium.webdriver.common.by import By

    from .live_media import OTHER_CHANNEL_ID
    from .map_support import raise_alarm
    from .sensor_web import screenshot

    node = LiveNode(tmp_path / "data")  # recordings 40 and 20 minutes ago; an alarm now
    (a_start, a_end), (b_start, _) = node.recorded
    inside = raise_alarm(node.services.db, CHANNEL_ID, b_start + timedelta(seconds=12))
    cleared = raise_alarm(node.services.db, CHANNEL_ID, a_start + timedelta(seconds=5), False)
    raise_alarm(node.services.db, OTHER_CHANNEL_ID, b_start)  # another camera's
    node.start()
    try:
        driver = browser
        open_replay(driver, node)
        marks = wait_for(
            driver, lambda d: (m := d.execute_script(MARKS)) and m["counted"] and m, "markers"
        )
        ids = {m["id"] for m in marks["alarms"]}
        assert ids == {inside, cleared, node.alarm_id}, marks  # not the other camera's
        by_id = {m["id"]: m for m in marks["alarms"]}
        assert by_id[cleared]["left"] < by_id[inside]["left"] < by_id[node.alarm_id]["left"]
        gap_ends = [
            (datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in marks["gaps"]
        ]
        near = lambda x, y: abs((x - y).total_seconds()) < 1.5  # noqa: E731
        assert any(near(s, a_end) and near(e, b_start) for s, e in gap_ends), marks  # the break
        wait_for(driver, lambda d: state(d)["t"] > 0.3, "the first recording to play")

        driver.find_element(By.CSS_SELECTOR, f'.alarm-mark[data-alarm="{inside}"]').click()
        target = (b_start + timedelta(seconds=12 - 5)).timestamp() * 1000
        s = wait_for(
            driver,
            lambda d: (n := state(d))["ready"] >= 2 and abs(n["at"] - target) < 4000 and n,
            "playing from 5 s before the alarm",
        )
        assert "报警 alarms: 3" in s["info"]
        screenshot(driver, "replay-alarm-markers", tmp_path)
    finally:
        node.stop()
