"""Browser-test support: the real server in a thread (``LiveNode``) and Selenium helpers."""

from __future__ import annotations

import asyncio
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select, update

from storage.models import Alarm, Channel, Organisation, Profile, RecordingSegment, User
from vms.app import Application, open_services
from vms.config import load_settings
from vms.demo import demo_components, seed_demo
from vms.media.hub import StreamHub

from .live_media import (
    CAMERA,
    CHANNEL_ID,
    DEVICE_ID,
    FPS,
    PASSWORD,
    access_unit,
    encoded_units,
    seed_cameras,
    ts_segment,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 25
SEGMENT_S = 20


def snapshot_jpeg(text: str) -> bytes:
    img = np.full((180, 320, 3), (40, 40, 200), np.uint8)
    cv2.putText(img, text, (40, 110), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
    return cv2.imencode(".jpg", img)[1].tobytes()


class LiveNode:
    """The real server (``Application``) in its own thread and event loop.

    Default: seeded cameras whose frames the test publishes into the hub.  ``demo=True``: the
    ``vms demo`` set-up instead, a simulated NVR streaming PS over RTP after a real INVITE.
    """

    def __init__(self, data_dir: Path, demo: bool = False) -> None:
        self.demo = demo
        self.settings = load_settings(
            server={"data_dir": data_dir, "host": "127.0.0.1", "port": 0},
            sip={"host": "127.0.0.1", "port": 0, "password": "live-node-pass"},  # no default
            auth={
                "jwt_secret": "browser-test-secret-0123456789abcdef",
                "admin_username": "admin",
                "admin_password": PASSWORD,
            },
            analyzers={"enabled": False},
            recording={"enabled": False},
            live={"ice_addresses": ["127.0.0.1"]},
            demo={"devices": 1, "channels": 2},
        )
        self.services = open_services(self.settings)
        with self.services.db.session() as s:
            # The bootstrap admin must change its password at first login (tested in
            # test_accounts_browser.py); the other browser tests log in with the known one.
            s.execute(update(User).values(must_change_password=False))
        if demo:
            seed_demo(self.services)
        else:
            seed_cameras(self.services.db)
            self.alarm_id = self._seed_alarm()
            self.recorded = self._seed_recordings()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-node", daemon=True)

    def _seed_alarm(self) -> str:
        jpeg = snapshot_jpeg("FIRE")
        with self.services.db.session() as s:
            channel = s.scalar(select(Channel).where(Channel.channel_id == CHANNEL_ID))
            org = s.get(Organisation, channel.device.org_id)
            key = f"alarms/test/{CHANNEL_ID}-1.jpg"
            self.services.objects.put(key, jpeg, "image/jpeg")
            alarm = Alarm(
                channel_pk=channel.id,
                org_id=org.id,
                profile=Profile.enterprise,
                alarm_type="1",
                rule="fire",
                video_code=CHANNEL_ID,
                device_code="VMS-AI-0001",
                raised_at=datetime.now(UTC),
                image_key=key,
            )
            s.add(alarm)
            s.flush()
            return alarm.alarm_id

    def _seed_recordings(self) -> list[tuple[datetime, datetime]]:
        """Two 20 s TS segments 40 and 20 minutes ago, stored as the recorder stores them."""
        data = ts_segment(encoded_units(profile="high"), SEGMENT_S * FPS)
        now = datetime.now(UTC).replace(microsecond=0)
        spans = []
        with self.services.db.session() as s:
            for minutes in (40, 20):
                start = now - timedelta(minutes=minutes)
                end = start + timedelta(seconds=SEGMENT_S)
                key = f"recordings/test/{CHANNEL_ID}/{start:%H%M%S}.ts"
                self.services.objects.put(key, data, "video/mp2t")
                s.add(
                    RecordingSegment(
                        device_id=DEVICE_ID,
                        channel_id=CHANNEL_ID,
                        start=start,
                        end=end,
                        object_key=key,
                        size=len(data),
                        container="ts",
                        codec="h264",
                    )
                )
                spans.append((start, end))
        return spans

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = Application(self.services, extra=demo_components() if self.demo else [])
        self.app = app  # tests reach the components (the demo's simulated NVRs) through it
        await app.start()
        try:
            assert isinstance(self.services.media, StreamHub)
            self.port = app._server.servers[0].sockets[0].getsockname()[1]
            feeder = asyncio.create_task(self._feed() if not self.demo else asyncio.sleep(0))
            self._ready.set()
            await self._stop.wait()
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        finally:
            await app.stop()

    async def _feed(self) -> None:
        units = encoded_units(profile="high")  # what cameras send; the SDP says baseline
        i = 0
        while True:
            self.services.media.publish(CAMERA, access_unit(CHANNEL_ID, i, units))
            i += 1
            await asyncio.sleep(1 / FPS)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(lambda: fn(*args, **kwargs))

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def js(driver: Any, script: str, *args: Any) -> Any:
    """A script's value in the page (shorter than ``driver.execute_script`` in the checks)."""
    return driver.execute_script(script, *args)


def wait_for(driver: Any, condition: Any, what: str, timeout: float = WAIT_S) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        page = driver.execute_script("return document.body.innerText.slice(0, 2000)")
        raise AssertionError(
            f"timed out waiting for {what}; page: {page!r}; console: {logs}"
        ) from None


# Before the page's own scripts: a browser with no language chosen gets 双语, the labels as the
# modules write them, which the browser tests check; the choice they make later stays.
BILINGUAL = (
    "try { if (localStorage.getItem('vms.lang') === null) localStorage.setItem('vms.lang', 'bi'); }"
    " catch (_) {}"
)


def log_in(driver: Any, node: LiveNode | None, username: str, bilingual: bool = True) -> None:
    """Log in through the form; ``node`` given → load the page first, None → the page is open.

    ``bilingual`` (with ``node``): a browser that has no language saved shows 双语, not the
    UI's default 中文 (tests/test_language_browser.py checks that default: False).
    """
    from selenium.webdriver.common.by import By

    if node is not None:
        if bilingual and not getattr(driver, "_vms_bilingual", False):
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": BILINGUAL})
            driver._vms_bilingual = True
        driver.get(node.url)
    wait_for(driver, lambda d: d.find_element(By.ID, "login-form").is_displayed(), "login form")
    form = driver.find_element(By.ID, "login-form")
    form.find_element(By.NAME, "username").send_keys(username)
    form.find_element(By.NAME, "password").send_keys(PASSWORD)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "logged-in nav")


def nav(driver: Any, view: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#nav button[data-view={view}]").click()


VIDEO_STATE = """
const v = document.querySelector('video[data-tile="0"]');
return v ? {ready: v.readyState, w: v.videoWidth, h: v.videoHeight, t: v.currentTime} : null;
"""


ALARM_ROW = """
const row = document.querySelector(`tr[data-alarm="${arguments[0]}"]`);
if (!row) return null;
const img = row.querySelector('img');
return {text: row.innerText, handling: row.querySelector('td.handling').innerText,
        thumb: img ? img.naturalWidth : 0};
"""


TOAST = """
const el = document.querySelector(`.toast[data-alarm="${arguments[0]}"]`);
return el && {text: el.textContent, thumb: el.querySelector('img').naturalWidth,
              opacity: getComputedStyle(el).opacity};
"""
