"""The header's language switch in a real browser (headless Chromium): 中文 / EN / 双语.

中文 is the default of a browser that has chosen nothing; 双语 shows the labels as every module
writes them (both languages); EN and 中文 rewrite the UI's bilingual strings (text, title,
placeholder, aria-label) to one language, keep them rewritten as the views change them (the
live wall's tile status), survive a reload (localStorage), leave data alone (a camera named
"罐区东 Tank east") and 双语 puts the originals back exactly.  The other browser tests log in
with 双语 saved (tests/live_web.py log_in); this one starts from nothing saved."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .live_media import OTHER_CAMERA
from .live_web import CHROMEDRIVER, CHROMIUM, LiveNode, log_in, nav, wait_for
from .sensor_web import chromium

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "language"
CAMERA_NAME = "罐区东 Tank east"  # seeded by tests/live_media.py: data, never split

# Labels the views write bilingual: in EN no visible text may still hold both halves.
KNOWN = [
    ("报警", "Alarms"),
    ("设备", "Devices"),
    ("实时", "Live"),
    ("确认", "Ack"),
    ("待确认", "new"),
    ("已确认", "acknowledged"),
    ("摄像机", "Camera"),
    ("状态", "Status"),
    ("级别", "Level"),
    ("处置", "Handling"),
    ("保存", "Save"),
    ("在线", "on"),
    ("离线", "off"),
    ("刷新", "Refresh"),
    ("启用", "Enable"),
]

# Header, wall tool bars and channel tree: what the modules wrote, text and the 3 attributes.
SNAPSHOT = """
const out = [];
for (const root of document.querySelectorAll('header, .live-view .toolbar, #channel-tree')) {
  const w = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
  for (let n = w.currentNode; n; n = w.nextNode()) {
    if (n.nodeType === Node.TEXT_NODE) { if (n.data.trim()) out.push(n.data); continue; }
    for (const a of ['title', 'placeholder', 'aria-label'])
      if (n.hasAttribute(a)) out.push(a + '=' + n.getAttribute(a));
  }
}
return out;
"""

# Visible text nodes (outside data-i18n="off") that still pair Chinese and English: those
# holding a known label's two halves, and any the module's own rule would still rewrite.
LEFTOVERS = """
const [known, done] = arguments;
import('/static/js/i18n.js').then(m => {
  const out = [];
  const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = w.nextNode(); n; n = w.nextNode()) {
    const el = n.parentElement, t = n.data;
    if (!el || el.closest('[data-i18n="off"], script, style, textarea')) continue;
    if (!el.checkVisibility() || !/[\\u4e00-\\u9fff]/.test(t)) continue;
    const words = t.split(/[^A-Za-z]+/);
    if (known.some(([zh, en]) => t.includes(zh) && words.includes(en)) || m.pick(t, 'en') !== t)
      out.push(t);
  }
  done(out);
});
"""

LANG = "return document.documentElement.lang"
REWRITTEN = "[data-i18n-title], [data-i18n-placeholder], [data-i18n-aria-label]"
NAV_TEXT = "return document.querySelector(`#nav button[data-view='${arguments[0]}']`).textContent"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path_factory.mktemp("lang") / "data")
    n.start()
    yield n
    n.stop()


def text_of(driver: Any, selector: str) -> str:
    return driver.execute_script(
        "return document.querySelector(arguments[0]).textContent", selector
    )


def present(selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return lambda d: d.find_elements(By.CSS_SELECTOR, selector)


def choose(driver: Any, mode: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#lang-switch button[data-lang-choice='{mode}']").click()
    lang = "en" if mode == "en" else "zh-CN"
    wait_for(driver, lambda d: d.execute_script(LANG) == lang, lang)


def shot(driver: Any, name: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    (tmp_path / f"{name}.png").write_bytes((ARTIFACTS / f"{name}.png").read_bytes())


def test_language_switch_rewrites_the_ui_and_keeps_data(node: LiveNode, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with chromium(tmp_path, 1400, 900) as driver:
        log_in(driver, node, "operator", bilingual=False)
        wait_for(driver, present("#channel-tree li.tree-cam"), "tree")
        wait_for(driver, present("#wall-select option"), "walls")
        # 中文 is the default: nothing saved, Chinese only.
        assert driver.execute_script("return localStorage.getItem('vms.lang')") is None
        assert driver.execute_script(LANG) == "zh-CN"
        assert driver.execute_script("return document.documentElement.dataset.lang") == "zh"
        alarms = driver.execute_script(NAV_TEXT, "alarms")
        assert "报警" in alarms and "Alarms" not in alarms
        assert driver.execute_script(NAV_TEXT, "devices").strip() == "设备"
        for choice, pressed in (("zh", "true"), ("en", "false"), ("bi", "false")):
            button = driver.find_element(
                By.CSS_SELECTOR, f"#lang-switch [data-lang-choice='{choice}']"
            )
            assert button.get_attribute("aria-pressed") == pressed, choice
        assert driver.find_element(By.ID, "wall-name").get_attribute("placeholder") == "名称"
        toolbar = driver.find_element(By.CSS_SELECTOR, ".live-view .toolbar").text
        assert "分屏" in toolbar and "Layout" not in toolbar and "4 画面" in toolbar
        leftovers = driver.execute_async_script(LEFTOVERS, KNOWN)
        assert leftovers == [], leftovers

        # 双语 chosen and kept over a reload: the labels exactly as the modules write them.
        choose(driver, "bi")
        assert driver.execute_script("return localStorage.getItem('vms.lang')") == "bi"
        assert driver.execute_script(NAV_TEXT, "alarms").startswith("报警 Alarms")
        driver.refresh()
        wait_for(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "nav after reload")
        wait_for(driver, present("#channel-tree li.tree-cam"), "tree")
        wait_for(driver, present("#wall-select option"), "walls")
        assert driver.execute_script("return document.documentElement.dataset.lang") == "bi"
        assert driver.execute_script(NAV_TEXT, "alarms").startswith("报警 Alarms")
        both = driver.find_element(By.CSS_SELECTOR, "#lang-switch [data-lang-choice='bi']")
        assert both.get_attribute("aria-pressed") == "true"
        assert driver.find_elements(By.CSS_SELECTOR, REWRITTEN) == []
        for badge in ("#alarm-badge", "#warning-badge"):  # counts come in after the page
            wait_for(driver, lambda d, b=badge: text_of(d, b) != "", badge)
        before = driver.execute_script(SNAPSHOT)
        assert "名称 name" in driver.find_element(By.ID, "wall-name").get_attribute("placeholder")

        # EN: the nav, placeholders and titles in English; data (camera names) untouched.
        choose(driver, "en")
        assert driver.execute_script("return localStorage.getItem('vms.lang')") == "en"
        alarms = driver.execute_script(NAV_TEXT, "alarms")
        assert "Alarms" in alarms and "报警" not in alarms
        assert driver.execute_script(NAV_TEXT, "devices").strip() == "Devices"
        wall_name = driver.find_element(By.ID, "wall-name")
        assert wall_name.get_attribute("placeholder") == "name"
        assert wall_name.get_attribute("data-i18n-placeholder") == "名称 name"
        tree_filter = driver.find_element(By.CSS_SELECTOR, ".tree-filter")
        assert tree_filter.get_attribute("placeholder") == "filter"
        toolbar = driver.find_element(By.CSS_SELECTOR, ".live-view .toolbar").text
        assert "Layout:" in toolbar and "4 tiles" in toolbar and "1 tile" in toolbar
        assert "分屏" not in toolbar and "画面" not in toolbar
        tree = driver.find_element(By.ID, "channel-tree").text
        assert CAMERA_NAME in tree and "Tour selected" in tree and "轮巡所选" not in tree
        options = driver.execute_script(
            "return [...document.querySelectorAll('.tile[data-index=\"0\"] select option')]"
            ".map(o => o.textContent)"
        )
        assert "— choose camera —" in options
        assert any(CAMERA_NAME in o for o in options), options

        # A camera put on the wall now: the tile's status, written by live.js, comes in English.
        tile = '.tile[data-index="0"]'
        # no frames are fed for this camera: it waits for video
        Select(driver.find_element(By.CSS_SELECTOR, f"{tile} select")).select_by_value(
            str(OTHER_CAMERA)
        )
        status = wait_for(
            driver,
            lambda d: d.execute_script(
                f"const t = document.querySelector('{tile}');"
                "return t.querySelector('.tile-status').dataset.state === 'connected' &&"
                " t.querySelector('.tile-status').textContent"
            ),
            "the camera to connect (no frames yet)",
        )
        assert status == "waiting for video"
        health = wait_for(driver, lambda d: text_of(d, f"{tile} .tile-health"), "health label")
        assert health in ("waiting", "offline", "connecting", "reconnecting"), health
        assert text_of(driver, '.tile[data-index="1"] .tile-status') == "idle"
        title = driver.find_element(By.CSS_SELECTOR, tile).get_attribute("title")
        assert title == "加油岛 Pump island"  # the camera's name: data
        shot(driver, "language-en", tmp_path)

        # A reload keeps EN (the browser's choice, not the user's).
        driver.refresh()
        wait_for(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "nav after reload")
        wait_for(driver, present("#channel-tree li.tree-cam"), "tree")
        assert driver.execute_script(LANG) == "en"
        assert driver.execute_script(NAV_TEXT, "alarms").startswith("Alarms")
        wait_for(
            driver,
            lambda d: "waiting" in text_of(d, f"{tile} .tile-status"),
            "the tile's status in English after the reload",
        )

        # 中文: Chinese only.
        choose(driver, "zh")
        alarms = driver.execute_script(NAV_TEXT, "alarms")
        assert "报警" in alarms and "Alarms" not in alarms
        assert driver.find_element(By.ID, "wall-name").get_attribute("placeholder") == "名称"
        status = text_of(driver, f"{tile} .tile-status")
        assert status.startswith("等待画面") and "waiting" not in status
        assert CAMERA_NAME in driver.find_element(By.ID, "channel-tree").text
        shot(driver, "language-zh", tmp_path)

        # 双语: the originals back, exactly.
        choose(driver, "bi")
        assert driver.execute_script(SNAPSHOT) == before
        assert driver.find_elements(By.CSS_SELECTOR, REWRITTEN) == []
        assert driver.execute_script(NAV_TEXT, "alarms").startswith("报警 Alarms")
        status = text_of(driver, f"{tile} .tile-status")
        assert status in ("等待画面 waiting for video", "连接中 connecting", "中断 interrupted")

        # Other views in EN: nothing visible is left bilingual; camera names stay whole.
        choose(driver, "en")
        nav(driver, "alarms")
        row = f'tr[data-alarm="{node.alarm_id}"]'
        wait_for(driver, present(row), "the seeded alarm")
        assert CAMERA_NAME in driver.find_element(By.CSS_SELECTOR, row).text
        wait_for(driver, lambda d: text_of(d, f"{row} td.handling") == "new", "handling in EN")
        # the alarm type: the API names it in Chinese only (明火), the glossary in English
        assert text_of(driver, f"{row} td strong") == "open flame / fire"
        leftovers = driver.execute_async_script(LEFTOVERS, KNOWN)
        assert leftovers == [], leftovers
        shot(driver, "language-en-alarms", tmp_path)

        nav(driver, "setup")
        wait_for(driver, present("#setup-cameras tr[data-camera]"), "setup's cameras")
        wait_for(driver, present("#setup-form .setup-enabled"), "setup's form")
        leftovers = driver.execute_async_script(LEFTOVERS, KNOWN)
        assert leftovers == [], leftovers
        assert CAMERA_NAME in driver.find_element(By.ID, "setup-cameras").text
        assert "Cameras" in driver.find_element(By.CSS_SELECTOR, ".setup-list h3").text
        assert driver.execute_script("return document.title").startswith("视频监控")  # not a pair


# The splitting rule itself (js/i18n.js pick), run in the browser on strings the views write.
CASES = [
    ("报警 Alarms", "报警", "Alarms"),
    ("分屏 Layout: ", "分屏: ", "Layout: "),
    ("离线 offline", "离线", "offline"),
    ("全屏 Full screen (双击 double click)", "全屏 (双击)", "Full screen (double click)"),
    ("共 total 12 · 进行中 active 3", "共 12 · 进行中 3", "total 12 · active 3"),
    ("片段 ranges: 2 · 缺口 gaps: 0", "片段: 2 · 缺口: 0", "ranges: 2 · gaps: 0"),
    ("1 小时 1 h", "1 小时", "1 h"),
    ("1.5 小时 h", "1.5 小时", "1.5 h"),
    ("— 未保存 unsaved —", "— 未保存 —", "— unsaved —"),
    ("▶ 实时 Live", "▶ 实时", "▶ Live"),
    ("冷却 cooldown (s)", "冷却 (s)", "cooldown (s)"),
    ("上级平台（级联） Superiors (cascade)", "上级平台（级联）", "Superiors (cascade)"),
    ("错误 error: camera not found", "错误: camera not found", "error: camera not found"),
    ("页 Page 1/2", "页 1/2", "Page 1/2"),
    ("轮巡间隔 秒, 0 = 关 tour period, 0 = off", "轮巡间隔 秒, 0 = 关", "tour period, 0 = off"),
    ("Cam (34) — 拖到画面 drag onto a tile", "Cam (34) — 拖到画面", "Cam (34) — drag onto a tile"),
    (
        "浏览器不支持 HLS this browser cannot play HLS",
        "浏览器不支持 HLS",
        "this browser cannot play HLS",
    ),
    ("表2/表3/表4 Tables 2-4", "表2/表3/表4", "Tables 2-4"),
    ("视频监控与智能分析 · GB28181 VMS",) * 3,
    ("1 画面", "1 画面", "1 画面"),
    ("12 fps · 1.2 Mb/s", "12 fps · 1.2 Mb/s", "12 fps · 1.2 Mb/s"),
]


# What EN adds to the rule (js/i18n.js translate): English for Chinese-only names.
TRANSLATED = [
    ("明火", "明火", "open flame / fire"),
    ("未佩戴安全帽", "未佩戴安全帽", "no safety helmet"),
    ("明火 fire", "明火", "fire"),
    (
        "明火 2024-05-01 10:00:00",
        "明火 2024-05-01 10:00:00",
        "open flame / fire 2024-05-01 10:00:00",
    ),
    ("烟雾报警", "烟雾报警", "烟雾报警"),  # not a name of its own
    ("4 画面", "4 画面", "4 tiles"),
    ("1 画面", "1 画面", "1 tile"),
]


def test_the_rule_splits_labels_and_leaves_the_rest(node: LiveNode, tmp_path: Path) -> None:
    with chromium(tmp_path) as driver:
        driver.get(node.url)
        got = driver.execute_async_script(
            "const [cases, done] = arguments;"
            "import('/static/js/i18n.js').then(m =>"
            " done(cases.map(([s]) => [s, m.pick(s, 'zh'), m.pick(s, 'en'), m.pick(s, 'bi')])));",
            [list(c) for c in CASES],
        )
        assert got == [[s, zh, en, s] for s, zh, en in CASES]
        got = driver.execute_async_script(
            "const [cases, done] = arguments;"
            "import('/static/js/i18n.js').then(m => done(cases.map(([s]) =>"
            " [s, m.translate(s, 'zh'), m.translate(s, 'en'), m.translate(s, 'bi')])));",
            [list(c) for c in TRANSLATED],
        )
        assert got == [[s, zh, en, s] for s, zh, en in TRANSLATED]
