"""The forced password change in a real browser: an admin whose password was set for it
(bootstrap settings, an admin's reset) logs in, gets only the change form, sets its own
password, lands in the UI, signs out, and logs in again with the new one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from storage.models import User

from .live_web import CHROMEDRIVER, CHROMIUM, PASSWORD, LiveNode, wait_for
from .sensor_web import chromium, screenshot

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs the Debian packages chromium and chromium-driver",
)

NEW_PASSWORD = "Own-choice-Pw-77"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path / "data")
    with n.services.db.session() as s:  # as bootstrap_admin leaves it
        s.execute(update(User).where(User.username == "admin").values(must_change_password=True))
    n.start()
    yield n
    n.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path, 1280, 900) as driver:
        yield driver


def _submit_login(driver: Any, password: str) -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: d.find_element(By.ID, "login-form").is_displayed(), "login form")
    form = driver.find_element(By.ID, "login-form")
    form.find_element(By.NAME, "username").send_keys("admin")
    form.find_element(By.NAME, "password").send_keys(password)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_a_bootstrap_password_is_changed_before_the_ui_opens(
    node: LiveNode, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(node.url)
    _submit_login(browser, PASSWORD)
    view = By.ID, "password-view"
    wait_for(browser, lambda d: d.find_element(*view).is_displayed(), "password change form")
    assert not browser.find_element(By.ID, "nav").is_displayed()
    form = browser.find_element(By.ID, "password-form")

    def fill(current: str, new: str, repeat: str) -> None:
        for name, value in (("current", current), ("new", new), ("repeat", repeat)):
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    error = By.ID, "password-error"
    fill(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x")
    wait_for(browser, lambda d: "不一致" in d.find_element(*error).text, "mismatch message")
    fill(PASSWORD, "weakpassword", "weakpassword")
    wait_for(browser, lambda d: "three of" in d.find_element(*error).text, "policy message")
    screenshot(browser, "password-change-refused", tmp_path)
    fill(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    wait_for(
        browser, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the UI after the change"
    )
    assert not browser.find_element(*view).is_displayed()
    screenshot(browser, "password-changed", tmp_path)

    browser.find_element(By.ID, "logout").click()
    _submit_login(browser, PASSWORD)  # the bootstrap password no longer works
    wait_for(browser, lambda d: d.find_element(By.ID, "login-error").text, "login refused")
    browser.find_element(By.NAME, "password").clear()
    browser.find_element(By.NAME, "username").clear()
    _submit_login(browser, NEW_PASSWORD)
    wait_for(browser, lambda d: d.find_element(By.ID, "nav").is_displayed(), "logged in again")
