"""Reports from the level below in a real browser: a county's sender posts an alarm and its
clear (with pictures) to this node's intake; the operator sees both rows with their
thumbnails, and filters to the clears."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.security import create_token
from storage.models import Organisation, Role, User
from vms.uplink import tables

from .alarms_support import small_jpeg
from .live_web import CHROMEDRIVER, CHROMIUM, LiveNode, log_in, nav, wait_for
from .sensor_web import chromium, screenshot

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)

ROWS = "#intake tr[data-intake]"
THUMBS_LOADED = """
return [...document.querySelectorAll('#intake img.intake-thumb')]
  .filter(i => i.complete && i.naturalWidth > 0).length;
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path / "data")
    n.start()
    yield n
    n.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path, 1400, 900) as driver:
        yield driver


def _post_from_below(node: LiveNode) -> None:
    with node.services.db.session() as s:
        org = s.scalars(select(Organisation).order_by(Organisation.id)).first()
        user = User(username="county-uplink", password_hash="x", role=Role.uplink, org_id=org.id)
        s.add(user)
        s.flush()
        token = create_token(node.settings.auth.jwt_secret, user.id, "uplink", 3600)
    alarm_id = str(uuid.uuid4())
    at = datetime.now(UTC)
    for status, width in ((1, 160), (0, 200)):
        fields = tables.table4(
            alarm_id, "2", status, at, "Asia/Shanghai", "AI-X-1", "91370102101320000001"
        )
        files = [(k, (None, v, None)) for k, v in fields.items()]
        files.append((tables.ALARM_IMAGE, ("a.jpg", small_jpeg(width), "image/jpeg")))
        resp = httpx.post(
            f"{node.url}api/intake/table4",
            files=files,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text


def test_reports_from_below_are_listed_with_their_pictures(
    node: LiveNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _post_from_below(node)
    log_in(browser, node, "admin")
    nav(browser, "intake")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ROWS)) == 2, "two rows")
    wait_for(browser, lambda d: d.execute_script(THUMBS_LOADED) == 2, "both pictures shown")
    text = browser.find_element(By.ID, "intake").text
    assert "报警 alarm" in text and "销警 clear" in text and "91370102101320000001" in text
    screenshot(browser, "intake", tmp_path)
    Select(
        browser.find_element(By.CSS_SELECTOR, "select[aria-label='状态 status']")
    ).select_by_value("0")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ROWS)) == 1, "the clear only")
    assert "销警 clear" in browser.find_element(By.CSS_SELECTOR, ROWS).text
