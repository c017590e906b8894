"""The operator's page at ``{admin.path}/`` in a real headless Chromium (Debian's ``chromium``
and ``chromium-driver``, driven by Selenium), on the operated app under a real uvicorn.

Logs in with the token (a wrong one first), watches a rule's counters move under load, finds
the top limited caller, resets it from the page and sees its next request admitted; a value
with ``<script>`` (an identity, a broken rules file) is shown as text and never runs. With
``RATELIMITS_SCREENSHOT=docs/images/admin-page.png`` the screenshot under load lands there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from support.operated import ADMIN, TOKEN, TOKEN_ENV
from support.uvicorn import uvicorn_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCRIPT_USER = "<script>window.__pwned=1</script>"
BAD_KEY = "<img src=x onerror=window.__pwned=2>"
T = TypeVar("T")

RULES = textwrap.dedent(f"""\
    version: 1
    exempt: {{paths: [/health]}}
    identities: {{user: "header:X-User"}}
    rules:
      - name: items
        match: {{path: "/items/{{item_id}}"}}
        scope: user
        algorithm: sliding_window_log
        limit: 5/hour
      - name: ping
        match: {{path: /ping}}
        algorithm: gcra
        limit: 1000000/hour
      - name: everything
        match: {{path: "/**"}}
        algorithm: fixed_window
        limit: 50/minute
        mode: shadow
    admin: {{enabled: true, path: {ADMIN}, token_env: {TOKEN_ENV}}}
    """)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(exe):  # .ci/run installs both; a machine without them fails, it does not skip
            pytest.fail(f"{exe} is missing: apt-get install -y chromium chromium-driver")
    path = tmp_path_factory.mktemp("page") / "ratelimits.yaml"
    path.write_text(RULES)
    env = {"RL_TEST_CONFIG": str(path), TOKEN_ENV: TOKEN, "RL_TEST_WATCH": "0"}
    with uvicorn_server("http_apps.operated:app", env=env, ready_path="/health") as url:
        yield url, path


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP violations
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,1150"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(driver: WebDriver, what: str, condition: Callable[[WebDriver], T], timeout: float = 30) -> T:
    wait = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(condition, message=f"timed out waiting for {what}")


class Load:
    """Requests in a thread until stopped (at most ``limit`` of them): mostly ``mallory`` on
    /items, a few other users, the ``<script>`` user, and /ping."""

    def __init__(self, url: str, limit: int = 50000) -> None:
        self.url = url
        self.limit = limit
        self.stop_event = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        others = ["alice", "bob", "carol", SCRIPT_USER]
        with httpx.Client(base_url=self.url, timeout=5) as c:
            while not self.stop_event.is_set() and self.sent < self.limit:
                i = self.sent
                if i % 5 == 4:
                    c.get("/ping")
                elif i % 5 == 3:
                    c.get(f"/items/{i}", headers={"X-User": others[(i // 5) % len(others)]})
                else:
                    c.get(f"/items/{i}", headers={"X-User": "mallory"})
                self.sent += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        self.thread.join(10)


def number(driver: WebDriver, css: str) -> float:
    text = driver.find_element(By.CSS_SELECTOR, css).text
    return float(text) if text else 0.0


def first_limited(driver: WebDriver) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, 'section.rule[data-rule="items"] .top-limited tbody tr td.key')
    return rows[0].text if rows else None


def sign_in(driver: WebDriver, token: str) -> None:
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "sign-in").click()


def test_the_admin_page_in_chromium(served: tuple[str, Path], browser: WebDriver, tmp_path: Path) -> None:
    url, path = served
    d = browser
    d.get(f"{url}{ADMIN}/")
    until(d, "the login form", lambda d: d.find_element(By.ID, "token").is_displayed())

    # a wrong token: an error, no data
    sign_in(d, "not-the-token")
    until(d, "the wrong-token error", lambda d: "Wrong token" in d.find_element(By.ID, "login-error").text)
    assert not d.find_element(By.ID, "app").is_displayed()
    assert d.execute_script("return sessionStorage.length") == 0

    sign_in(d, TOKEN)
    until(d, "the rules", lambda d: d.find_elements(By.CSS_SELECTOR, 'section.rule[data-rule="items"]'))
    assert d.execute_script("return sessionStorage.getItem('fastapi-ratelimits.admin-token')") == TOKEN
    assert str(path) in d.find_element(By.ID, "loaded").text  # where the rules were loaded from

    card = 'section.rule[data-rule="items"]'
    with Load(url):
        before = number(d, f"{card} .total-limited")
        until(d, "the limited counter to move", lambda d: number(d, f"{card} .total-limited") > before + 20)
        moved = number(d, f"{card} .total-limited")
        until(d, "it to move again", lambda d: number(d, f"{card} .total-limited") > moved)
        until(d, "a limited rate on the chart", lambda d: number(d, f"{card} .rate-limited") > 0)
        until(d, "shadow-limited decisions", lambda d: number(
            d, 'section.rule[data-rule="everything"] .total-shadow_limited') > 0)
        until(d, "mallory at the top of the limited callers", lambda d: first_limited(d) == "user:mallory")
        if os.environ.get("RATELIMITS_SCREENSHOT"):  # for the README: a chart with some history
            until(d, "30 s of history", lambda d: int(d.find_element(
                By.CSS_SELECTOR, f"{card} canvas.chart").get_attribute("data-points") or 0) >= 30, timeout=90)
        shot = tmp_path / "admin-page.png"
        assert d.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("RATELIMITS_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["RATELIMITS_SCREENSHOT"])

    with httpx.Client(base_url=url, timeout=5) as c:
        assert c.get("/items/1", headers={"X-User": "mallory"}).status_code == 429

        # reset mallory from the page: a confirmation first, then the next request is admitted
        def click_reset(d: WebDriver) -> bool:
            rows = d.find_elements(By.CSS_SELECTOR, f'{card} .top-limited tbody tr[data-key="user:mallory"]')
            if not rows:
                return False
            rows[0].find_element(By.CSS_SELECTOR, "button.reset-key").click()
            return True

        until(d, "the reset button of mallory", click_reset)
        until(d, "the confirmation", lambda d: d.find_element(By.ID, "confirm").is_displayed())
        assert "user:mallory" in d.find_element(By.ID, "confirm-text").text
        d.find_element(By.ID, "confirm-ok").click()
        until(d, "the reset to be reported",
              lambda d: "Reset items for user:mallory" in d.find_element(By.ID, "message").text)
        assert c.get("/items/1", headers={"X-User": "mallory"}).status_code == 200

    # the <script> identity: listed by its hash; looked up by its value, shown as text
    Select(d.find_element(By.ID, "lookup-rule")).select_by_value("items")
    d.find_element(By.ID, "lookup-key").send_keys(SCRIPT_USER)
    d.find_element(By.ID, "lookup-go").click()
    shown = until(d, "the status of the <script> key",
                  lambda d: d.find_element(By.CSS_SELECTOR, "#lookup-result .status-key").text)
    assert shown == "user:" + SCRIPT_USER
    assert d.find_elements(By.CSS_SELECTOR, "#lookup-result tbody tr")

    # a broken rules file whose error quotes markup: shown as text; the old rules stay
    path.write_text(RULES + f'"{BAD_KEY}": 1\n')
    d.find_element(By.ID, "reload").click()
    error = until(d, "the reload error", lambda d: d.find_element(By.ID, "reload-error-text").text)
    assert BAD_KEY in error
    assert "Reload refused" in d.find_element(By.ID, "message").text
    assert d.execute_script("return window.__pwned === undefined")
    assert d.execute_script("return document.querySelectorAll('script').length") == 1  # the page's own
    assert d.execute_script("return document.querySelectorAll('img').length") == 0
    logs = [e for e in d.get_log("browser") if "Content Security Policy" in e.get("message", "")]
    assert logs == []  # the page itself keeps to its CSP
    path.write_text(RULES)
