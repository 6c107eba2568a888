"""The sensor-side web UI in headless Chromium against the real server: live values and trend
charts, warnings raised by readings with their history and handling, the wall opening a
warning's camera, supervision, and an enterprise user's scope."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.sensor_models import SensorWarning, WarningLevel
from vms.ingest.samples import Sample

from .live_media import CAMERA, CHANNEL_ID
from .live_web import CHROMEDRIVER, CHROMIUM, WAIT_S, log_in, nav, wait_for
from .sensor_web import CARD, CHART, SensorNode, chromium, screenshot

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SensorNode]:
    n = SensorNode(tmp_path / "data")
    n.start()
    n.feed_history()
    yield n
    n.stop()
    assert not n._thread.is_alive()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path) as driver:
        yield driver


def card(driver: Any, sensor_id: int) -> dict[str, Any] | None:
    return driver.execute_script(CARD, sensor_id)


def click_range(driver: Any, hours: int) -> None:
    driver.execute_script(
        f"document.querySelector('#sensor-detail button[data-range=\"{hours}\"]').click()"
    )


def test_sensors_view_live_values_trend_and_level_colour(
    node: SensorNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    p = node.points
    log_in(driver, node, "operator")
    nav(driver, "sensors")
    wait_for(driver, lambda d: card(d, p.gas), "the GT-101 card")
    groups = driver.find_element(By.ID, "sensor-groups").text
    assert "1号罐区 Tank area 1" in groups and "装卸栈台 Loading rack" in groups
    assert "GT-301" not in groups  # the other enterprise's point is not in 甲化工's view
    level = wait_for(
        driver, lambda d: (c := card(d, p.level)) and "6.40" in c["value"] and c, "LT-101"
    )
    assert level["online"] == "1" and "在线 online" in level["text"] and level["level"] == ""

    # The trend chart of the gas point: a line with the H/HH lines, then buckets with a band.
    driver.execute_script(f"document.querySelector('.point[data-sensor=\"{p.gas}\"]').click()")
    chart = wait_for(
        driver, lambda d: (c := d.execute_script(CHART)) and c["painted"] > 500 and c, "the chart"
    )
    value = chart["series"][-1]
    assert chart["step"] == 0 and 55 <= value["n"] <= 61 and chart["rows"] == value["n"]
    assert value["marks"] == ["HH", "H"]
    screenshot(driver, "sensors-trend-1h", tmp_path)
    click_range(driver, 168)
    chart = wait_for(
        driver, lambda d: (c := d.execute_script(CHART)) and c["step"] == 3600 and c, "7 d buckets"
    )
    names = [s["name"] for s in chart["series"]]
    assert len(names) == 3 and "最小-最大 min–max" in names  # the min/max band
    assert 160 <= chart["series"][-1]["n"] <= 170 and chart["painted"] > 500
    screenshot(driver, "sensors-trend-7d", tmp_path)
    click_range(driver, 24)
    wait_for(driver, lambda d: (c := d.execute_script(CHART)) and c["step"] == 60, "1-min buckets")

    # A reading above H: the card turns to the warning's colour (gas H → orange) by the push.
    click_range(driver, 1)
    wait_for(driver, lambda d: d.execute_script(CHART)["step"] == 0, "raw rows again")
    before = driver.execute_script(CHART)["series"][-1]["n"]
    node.submit(p.ent_a, [Sample("GT-101", datetime.now(UTC), 31.5)])
    hot = wait_for(
        driver, lambda d: (c := card(d, p.gas)) and c["level"] == "orange" and c, "orange"
    )
    assert "31.5" in hot["value"] and hot["colour"] == "rgb(255, 140, 26)"
    wait_for(
        driver, lambda d: d.execute_script(CHART)["series"][-1]["n"] > before, "live value on chart"
    )
    screenshot(driver, "sensors-warning", tmp_path)

    # Outside the instrument range (PT-101: 0 … 2.5 MPa): a fault, pushed as "sensor.state".
    node.submit(p.ent_a, [Sample("PT-101", datetime.now(UTC), 3.2)])
    fault = wait_for(
        driver, lambda d: (c := card(d, p.pressure)) and "故障" in c["text"] and c, "fault"
    )
    assert "故障 fault" in fault["text"] and fault["level"] == ""


def warning_row(driver: Any, warning_id: str) -> dict[str, Any] | None:
    return driver.execute_script(
        'const r = document.querySelector(`#warnings tr[data-warning="${arguments[0]}"]`);'
        "return r && {text: r.innerText, level: r.dataset.level, handling: r.dataset.handling,"
        " handling_text: r.querySelector('td.handling').innerText}",
        warning_id,
    )


def open_warnings(node: SensorNode) -> list[SensorWarning]:
    with node.services.db.session() as s:
        return list(s.scalars(select(SensorWarning).order_by(SensorWarning.id)))


def test_warning_raised_by_readings_appears_live_with_history_and_is_handled(
    node: SensorNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    p = node.points
    log_in(driver, node, "operator")
    nav(driver, "warnings")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#warnings tr"), "warnings table")
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, "push-status").get_attribute("data-state") == "open",
        "the push channel",
    )
    node.submit(p.ent_a, [Sample("LT-101", datetime.now(UTC), 11.4)])  # above HH
    deadline = time.monotonic() + WAIT_S
    while not (warnings := open_warnings(node)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(warnings) == 1, "the warning engine did not open a warning"
    w = warnings[0]
    row = wait_for(driver, lambda d: warning_row(d, w.warning_id), "the warning row (pushed)")
    assert "LT-101" in row["text"] and row["level"] == w.level.value
    assert row["handling"] == "new" and "待确认 new" in row["handling_text"]
    badge = wait_for(
        driver,
        lambda d: (b := d.find_element(By.ID, "warning-badge")).is_displayed() and b,
        "badge",
    )
    assert badge.text == "1"
    # The level filter: red hides the orange warning, orange shows it again.
    level = Select(driver.find_element(By.CSS_SELECTOR, "select[data-filter=level]"))
    level.select_by_value("red")
    wait_for(driver, lambda d: not warning_row(d, w.warning_id), "the red filter")
    assert "暂无预警 no warnings" in driver.find_element(By.ID, "warnings").text
    level.select_by_value(w.level.value)
    wait_for(driver, lambda d: warning_row(d, w.warning_id), "the level filter")

    # Detail: the history starts with the opening.
    driver.execute_script(
        f"document.querySelector('#warnings tr[data-warning=\"{w.warning_id}\"]').click()"
    )
    history = wait_for(
        driver,
        lambda d: (t := d.find_elements(By.CSS_SELECTOR, "#warning-detail .timeline li")) and t,
        "the warning's history",
    )
    assert history[0].get_attribute("data-kind") == "opened"
    assert "开始 opened" in history[0].text

    def act(action: str, note: str = "") -> None:
        detail = driver.find_element(By.ID, "warning-detail")
        if note:
            box = detail.find_element(By.CSS_SELECTOR, "textarea.note")
            box.clear()
            box.send_keys(note)
        driver.execute_script(
            f"document.querySelector('#warning-detail button.act-{action}').click()"
        )

    def handling_is(state: str) -> None:
        wait_for(
            driver,
            lambda d: (
                open_warnings(node)[0].handling.value == state
                and (warning_row(d, w.warning_id) or {}).get("handling") == state
            ),
            f"handling {state}",
        )

    act("acknowledge")
    handling_is("acknowledged")
    act("handle", "已关闭进料阀 closed the inlet valve")
    handling_is("handled")
    act("feedback", "液位计校验正常，已排液 level gauge checked, drained")
    wait_for(
        driver,
        lambda d: "液位计校验正常" in d.find_element(By.ID, "warning-detail").text,
        "the feedback in the history",
    )
    screenshot(driver, "warnings-detail", tmp_path)

    # Back to normal, reported every 0.5 s (in warning a point reports at least every 10 s):
    # once normal has held for the downgrade hold (1 s here) the warning clears.
    def cleared(d: Any) -> bool:
        node.submit(p.ent_a, [Sample("LT-101", datetime.now(UTC), 6.0)])
        return bool(
            d.find_elements(By.CSS_SELECTOR, '#warning-detail .timeline li[data-kind="cleared"]')
        )

    wait_for(driver, cleared, "the clearing in the history")
    act("close", "处置完毕 done")
    handling_is("closed")
    kinds = driver.execute_script(
        "return [...document.querySelectorAll('#warning-detail .timeline li')]"
        ".map(li => li.dataset.kind)"
    )
    assert kinds == ["opened", "acknowledge", "handle", "feedback", "cleared", "close"]
    cleared_text = driver.find_element(
        By.CSS_SELECTOR, '#warning-detail .timeline li[data-kind="cleared"]'
    ).text
    assert "处置降级 handled and downgraded" in cleared_text  # cleared after handling
    wait_for(driver, lambda d: not d.find_element(By.ID, "warning-badge").is_displayed(), "badge")


def test_warning_opens_its_camera_on_the_wall_within_2_s(
    node: SensorNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    p = node.points
    log_in(driver, node, "operator")  # the live wall is the first view
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".tile select option"), "tiles")
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, "push-status").get_attribute("data-state") == "open",
        "the push channel",
    )
    driver.find_element(By.ID, "push-status").click()  # a gesture: the browser allows sound
    tile = '.tile[data-index="0"]'
    assert driver.execute_script(f"return document.querySelector('{tile} select').value") == ""
    sent = time.monotonic()
    node.submit(p.ent_a, [Sample("GT-101", datetime.now(UTC), 62.0)])  # above HH: red
    wait_for(
        driver,
        lambda d: d.execute_script(
            f"const t = document.querySelector('{tile}');"
            "return t.querySelector('select').value === arguments[0] && t.dataset.level",
            str(CAMERA),  # the wall names a camera "device/channel"
        ),
        "the warning's camera on the wall",
        timeout=10,
    )
    took = time.monotonic() - sent
    print(f"warning camera on the wall {took:.2f} s after the reading was handed in")
    assert took < 2.0, f"the camera came up {took:.2f} s after the reading"
    level = driver.execute_script(f"return document.querySelector('{tile}').dataset.level")
    assert level == "red"
    badge = driver.find_element(By.CSS_SELECTOR, f"{tile} .tile-level")
    assert "红色" in badge.text
    toast = wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#toasts .toast.warning-toast"),
        "the warning in the alarm panel",
    )[0]
    assert "GT-101" in toast.text
    # a red warning sounds like the most urgent alarm
    wait_for(driver, lambda d: d.execute_script("return window.__alarmSounds || 0") >= 1, "sound")
    # The camera plays (the node feeds its frames) and its snapshot reaches the pop-up.
    wait_for(
        driver,
        lambda d: d.execute_script(
            "const i = document.querySelector('#toasts .warning-toast img.thumb');"
            "return i && i.complete && i.naturalWidth > 0 && i.dataset.camera === arguments[0]",
            CHANNEL_ID,
        ),
        "the camera's snapshot in the pop-up",
    )
    wait_for(
        driver,
        lambda d: d.execute_script(
            "const v = document.querySelector('video[data-tile=\"0\"]');"
            "return v && v.readyState >= 2 && v.videoWidth > 0"
        ),
        "the camera to play",
    )
    screenshot(driver, "wall-warning", tmp_path)

    # The warning's detail shows the camera's snapshot; its bookmark opens the replay there.
    (w,) = open_warnings(node)
    driver.execute_script("document.querySelector('.toast.warning-toast button').click()")
    figure = wait_for(
        driver,
        lambda d: d.execute_script(
            "const f = document.querySelector(`#warning-detail .snapshots figure"
            '[data-camera="${arguments[0]}"]`);'
            "const i = f && f.querySelector('img');"
            "return i && i.complete && i.naturalWidth > 0 && f.innerText",
            CHANNEL_ID,
        ),
        "the snapshot in the warning's detail",
    )
    assert "罐区东 Tank east" in figure
    driver.execute_script("document.querySelector('#warning-detail button.bookmark').click()")
    window = wait_for(
        driver,
        lambda d: d.execute_script(
            "const v = document.querySelector('#view-replay');"
            "const b = v && !v.hidden && v.querySelector('.timeline-bar');"
            "return b && b.dataset.start && [v.querySelector('select').value,"
            " new Date(b.dataset.start).getTime(), new Date(b.dataset.end).getTime()]"
        ),
        "the replay view at the bookmark",
    )
    raised = w.raised_at if w.raised_at.tzinfo else w.raised_at.replace(tzinfo=UTC)
    at_ms = raised.timestamp() * 1000
    assert window[0] == str(CAMERA) and window[1] < at_ms < window[2]


def test_enterprise_user_sees_only_its_own_points(
    node: SensorNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    p = node.points
    log_in(driver, node, "ent_b")
    nav(driver, "sensors")
    wait_for(driver, lambda d: card(d, p.other_gas), "乙加油站's own point")
    options = driver.execute_script(
        "return [...document.querySelectorAll('#sensor-org option')].map(o => o.textContent)"
    )
    assert options == ["乙加油站"]
    text = driver.find_element(By.ID, "sensor-groups").text
    assert "GT-301" in text and "GT-101" not in text and "LT-101" not in text
    status = driver.execute_async_script(
        "const done = arguments[0];"
        f"fetch('/api/sensors/{p.gas}/readings', {{headers: {{Authorization: 'Bearer ' +"
        " sessionStorage.getItem('token')}}).then(r => done(r.status));"
    )
    assert status == 404
    # A warning of the other enterprise is neither pushed nor listed.
    node.submit(p.ent_a, [Sample("GT-101", datetime.now(UTC), 40.0)])
    node.submit(p.ent_b, [Sample("GT-301", datetime.now(UTC), 3.6)])
    wait_for(driver, lambda d: "3.60" in card(d, p.other_gas)["value"], "own pushed value")
    screenshot(driver, "enterprise-sensors", tmp_path)
    nav(driver, "warnings")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#warnings tr"), "warnings table")
    assert "GT-101" not in driver.find_element(By.ID, "warnings").text
    assert not driver.find_elements(By.CSS_SELECTOR, "#toasts .warning-toast")
    wall = driver.execute_script(
        "return [...document.querySelectorAll('.tile select')].map(s => s.value)"
    )
    assert str(CAMERA) not in wall and CHANNEL_ID not in wall


def test_supervision_view_live_figures_reports_and_overdue(
    node: SensorNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    p = node.points
    old = datetime.now(UTC) - timedelta(hours=30)
    with node.services.db.session() as s:  # a yellow warning left open for 30 hours
        w = SensorWarning(
            sensor_pk=p.pressure,
            org_id=p.ent_a,
            level=WarningLevel.yellow,
            peak_level=WarningLevel.yellow,
            cause="h",
            value=1.7,
            threshold=1.6,
            raised_at=old,
            level_since=old,
            detail={"tag": "PT-101"},
        )
        s.add(w)
        s.flush()
        overdue_id = w.warning_id
    log_in(driver, node, "operator")
    nav(driver, "supervision")
    live = wait_for(
        driver,
        lambda d: (
            (r := d.find_elements(By.CSS_SELECTOR, f'#supervision-live tr[data-org="{p.ent_a}"]'))
            and r[0]
        ),
        "甲化工's live figures",
    )
    cells = [c.text for c in live.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "甲化工" and cells[1] == "4" and cells[3] == "1", cells  # 4 points, 1 camera
    row = wait_for(
        driver,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, f'#supervision-overdue tr[data-ref="{overdue_id}"]'
        ),
        "the overdue warning",
    )[0]
    assert "PT-101" in row.text and "甲化工" in row.text
    report = wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#supervision-reports tr[data-report]"),
        "a stored report (the weekly one due at start-up)",
    )[0]
    csv_url = report.find_element(By.CSS_SELECTOR, "a.csv").get_attribute("href")
    print_url = report.find_element(By.CSS_SELECTOR, "a.print").get_attribute("href")
    fetched = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const get = u => fetch(u).then(async r => [r.status, await r.text()]);"
        "Promise.all([get(arguments[0]), get(arguments[1])]).then(done);",
        csv_url,
        print_url,
    )
    (csv_status, csv_text), (page_status, page) = fetched
    assert csv_status == 200 and "甲化工" in csv_text
    assert page_status == 200 and "甲化工" in page and "<table" in page
    screenshot(driver, "supervision", tmp_path)
    # The overdue row opens the warning in the warnings view.
    row.find_element(By.TAG_NAME, "button").click()
    wait_for(
        driver,
        lambda d: "PT-101" in d.find_element(By.ID, "warning-detail").text,
        "the overdue warning's detail",
    )


WALL_SLOTS = """
const done = arguments[arguments.length - 1];
import('/static/js/live.js').then(({ LiveWall }) => {
  localStorage.removeItem('test.wall');
  const wall = new LiveWall('test.wall');  // 4 tiles, not mounted: only its layout changes
  const out = {};
  out.first = wall.warningRaised(['A', 'B'], 'red', 'w1');
  wall.assign(2, 'C'); wall.assign(3, 'D');
  wall.openedAt = [100, 400, 200, 300];  // A oldest, then C, D, B
  wall.togglePin(0);
  out.second = wall.warningRaised(['E'], 'orange', 'w2');  // A pinned: C (oldest unpinned)
  out.again = wall.warningRaised(['B'], 'orange', 'w1');  // already shown: stays, re-marked
  out.channels = wall.channels.slice(0, 4);
  out.marks = Object.fromEntries([...wall.marks].map(([c, m]) => [c, m.level]));
  [1, 2, 3].forEach(i => wall.togglePin(i));
  out.allPinned = wall.warningRaised(['F'], 'red', 'w3');
  out.after = wall.channels.slice(0, 4);
  wall.warningChanged('w1', '');
  out.left = [...wall.marks.keys()].sort();
  out.saved = JSON.parse(localStorage.getItem('test.wall')).pinned;
  done(out);
}).catch(e => done(String(e)));
"""


def test_wall_takes_free_tiles_then_the_oldest_unpinned_one(node: SensorNode, browser: Any) -> None:
    """The linkage's choice of tiles, run by the wall's own module in Chromium."""
    browser.get(node.url)
    out = browser.execute_async_script(WALL_SLOTS)
    assert isinstance(out, dict), out
    assert out["first"] == [0, 1]
    assert out["second"] == [2] and out["again"] == [1]
    assert out["channels"] == ["A", "B", "E", "D"]
    assert out["marks"] == {"A": "red", "B": "orange", "E": "orange"}
    assert out["allPinned"] == [] and out["after"] == ["A", "B", "E", "D"]
    # F could not come up but keeps its mark: opened by hand, its tile shows the level
    assert out["left"] == ["E", "F"]
    assert out["saved"] == [True, True, True, True]
