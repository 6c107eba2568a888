"""The map page in a real browser (headless Chromium), with no tile URL (the default; these
machines have no internet): the county operator's cameras are drawn by their WGS-84 position
on the plain plane (east to the right, north up, a scale bar), the camera at 0/0 is listed
aside as having no position, the active alarm's ring blinks and opens the alarm's detail, and a
click on a camera opens it on the live wall."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live_media import DEVICE_ID, OTHER_CHANNEL_ID, OTHER_DEVICE_ID
from .live_web import CHROMEDRIVER, CHROMIUM, LiveNode, log_in, nav, wait_for
from .map_support import UNPLACED_CHANNEL, place
from .sensor_web import chromium, screenshot

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)

MARKERS = """
const at = el => {
  const r = el.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2];
};
return {
  cameras: Object.fromEntries([...document.querySelectorAll('svg.map-plane .map-camera')]
    .map(g => [g.dataset.key, at(g.querySelector('circle'))])),
  sensors: [...document.querySelectorAll('svg.map-plane .map-sensor')].map(g => g.dataset.level),
  alarms: [...document.querySelectorAll('svg.map-plane .map-alarm')].map(g => ({
    ids: g.dataset.alarms, camera: g.dataset.camera, cls: g.getAttribute('class'),
    animation: getComputedStyle(g).animationName, at: at(g.querySelector('circle'))})),
  unplaced: [...document.querySelectorAll('#map-unplaced li[data-key]')].map(li => li.dataset.key),
  scale: (document.querySelector('svg.map-plane .map-scale') || {dataset: {}}).dataset.metres,
  axes: [...document.querySelectorAll('svg.map-plane .map-axis')].map(t => t.textContent),
};
"""

OPACITY = "return getComputedStyle(document.querySelector('svg.map-plane .map-alarm')).opacity;"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path / "data")  # seeds both enterprises' cameras and a fire alarm on A's
    place(n.services.db)
    n.start()
    try:
        yield n
    finally:
        n.stop()


def test_the_map_places_cameras_blinks_alarms_and_opens_a_camera(
    node: LiveNode, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    a_key, b_key = f"{DEVICE_ID}/34020000001310000001", f"{OTHER_DEVICE_ID}/{OTHER_CHANNEL_ID}"
    with chromium(tmp_path) as driver:
        log_in(driver, node, "operator")
        nav(driver, "map")
        m = wait_for(
            driver,
            lambda d: (
                (x := d.execute_script(MARKERS)) and len(x["cameras"]) == 2 and x["alarms"] and x
            ),
            "two cameras and an alarm on the map",
        )
        (ax, ay), (bx, by) = m["cameras"][a_key], m["cameras"][b_key]
        assert abs(ax - bx) + abs(ay - by) > 40, m  # distinct places
        assert bx > ax and by < ay, m  # B lies east and north of A: right of it and above
        assert m["unplaced"] == [f"{DEVICE_ID}/{UNPLACED_CHANNEL}"]  # 0/0: listed aside
        assert len(m["sensors"]) == 2  # A's at its own position, B's at its installation
        assert m["scale"] and float(m["scale"]) > 0
        assert any(t.endswith("°E") for t in m["axes"]) and any(t.endswith("°N") for t in m["axes"])
        [alarm] = m["alarms"]
        assert alarm["ids"] == node.alarm_id and alarm["camera"] == a_key
        assert "blink" in alarm["cls"].split() and alarm["animation"] == "map-blink"
        assert abs(alarm["at"][0] - ax) < 2 and abs(alarm["at"][1] - ay) < 2  # on its camera
        seen = set()
        for _ in range(12):  # the ring's opacity changes: it really blinks
            seen.add(round(float(driver.execute_script(OPACITY)), 1))
            time.sleep(0.1)
        assert len(seen) > 2, seen
        screenshot(driver, "map-plane", tmp_path)

        # the alarm's ring: its detail beside the map, with the way to the camera
        driver.find_element(By.CSS_SELECTOR, "svg.map-plane .map-alarm circle").click()
        card = wait_for(
            driver,
            lambda d: d.find_elements(
                By.CSS_SELECTOR, f'#map-detail .map-card[data-alarm="{node.alarm_id}"]'
            ),
            "the alarm's detail",
        )[0]
        assert "报警中 active" in card.text and "明火" in card.text + driver.page_source
        wait_for(
            driver,
            lambda d: d.execute_script(
                "const i = document.querySelector('#map-detail img'); return i && i.naturalWidth;"
            ),
            "the alarm's snapshot",
        )
        screenshot(driver, "map-alarm-detail", tmp_path)

        # a camera: the live wall with that camera on a tile
        driver.find_element(
            By.CSS_SELECTOR, f'svg.map-plane .map-camera[data-key="{b_key}"] circle'
        ).click()
        wait_for(
            driver,
            lambda d: (
                d.execute_script("return location.hash") == "#live"
                and d.find_elements(By.CSS_SELECTOR, f'.tile[data-camera="{b_key}"]')
            ),
            "the clicked camera on the live wall",
        )


def test_an_enterprise_map_shows_its_own_cameras_only(node: LiveNode, tmp_path: Path) -> None:
    with chromium(tmp_path) as driver:
        log_in(driver, node, "ent_b")
        nav(driver, "map")
        m = wait_for(
            driver,
            lambda d: (x := d.execute_script(MARKERS)) and x["cameras"] and x,
            "ent_b's camera on the map",
        )
        assert list(m["cameras"]) == [f"{OTHER_DEVICE_ID}/{OTHER_CHANNEL_ID}"]
        assert m["alarms"] == [] and m["unplaced"] == []  # A's alarm and A's unplaced camera


def test_with_a_tile_url_the_map_is_leaflet_from_this_node(node: LiveNode, tmp_path: Path) -> None:
    """Tiles set: the vendored Leaflet (served here, no CDN) draws the same markers; a tile
    path that does not exist costs the background only."""
    from selenium.webdriver.common.by import By

    node.settings.server.map_tile_url = "/static/no-tiles/{z}/{x}/{y}.png"
    node.settings.server.map_tile_attribution = "内网底图 <i>tiles</i>"
    b_key = f"{OTHER_DEVICE_ID}/{OTHER_CHANNEL_ID}"
    with chromium(tmp_path) as driver:
        log_in(driver, node, "operator")
        nav(driver, "map")
        wait_for(
            driver,
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, ".leaflet-container .map-dot.map-camera")) == 2
            ),
            "the cameras on the Leaflet map",
        )
        assert driver.execute_script("return !!window.L && L.version") == "1.9.4"
        scripts = driver.execute_script("return [...document.scripts].map(s => s.src)")
        assert any(s.endswith("/static/vendor/leaflet.js") for s in scripts)
        alarm = driver.find_element(By.CSS_SELECTOR, ".leaflet-container .map-dot.map-alarm")
        assert "blink" in alarm.get_attribute("class").split()
        attribution = driver.find_element(By.CSS_SELECTOR, ".leaflet-control-attribution").text
        assert "内网底图 <i>tiles</i>" in attribution  # the setting is text, not HTML
        screenshot(driver, "map-leaflet", tmp_path)
        driver.find_element(By.CSS_SELECTOR, f'.map-dot.map-camera[data-key="{b_key}"]').click()
        wait_for(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, f'.tile[data-camera="{b_key}"]'),
            "the clicked camera on the live wall",
        )
