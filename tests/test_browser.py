"""The SSE examples in a real browser: headless Chromium's own ``EventSource`` against
``python -m h3green examples.x:app`` in a process of its own.

These need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
``selenium``. Outside CI a machine without them skips this module; in CI (``CI`` set) a
missing browser is a failure, so the tests cannot silently stop running there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import REPO, start_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"):
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM and CHROMEDRIVER, "CI must install chromium and chromium-driver"
    profile = tempfile.mkdtemp(prefix="h3green-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def example() -> Iterator[Callable[..., str]]:
    procs: list[Any] = []

    def start(module: str, **env: str) -> str:
        proc, port = start_cli(f"examples.{module}:app", env=env, cwd=REPO)
        procs.append(proc)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def text_of(browser: Any, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text  # type: ignore[no-any-return]


def test_counter_page_counts_to_done_in_the_browser(browser: Any, example: Callable[..., str]) -> None:
    url = example("counter", COUNTER_INTERVAL="0.02")
    browser.get(url + "/")
    WebDriverWait(browser, 15).until(lambda b: text_of(b, "status") == "done")
    # The page shows the last counter event it received before "done": all 30 arrived.
    assert text_of(browser, "n") == "29"


def test_token_stream_page_writes_the_whole_answer(browser: Any, example: Callable[..., str]) -> None:
    url = example("llm_stream", TOKEN_DELAY="0.005")
    browser.get(url + "/")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("héllo <b>greenlets</b>")
    browser.find_element(By.CSS_SELECTOR, "#f button").click()
    WebDriverWait(browser, 15).until(lambda b: "without stalling any of them." in text_of(b, "out"))
    # Tokens are JSON, so markup and non-ASCII in the prompt come back as text, unchanged.
    assert text_of(browser, "out").startswith('You asked: "héllo <b>greenlets</b>".')


def join_chat(browser: Any, url: str, username: str) -> None:
    browser.get(url + "/")
    name = browser.find_element(By.ID, "name")
    name.clear()
    name.send_keys(username)
    browser.find_element(By.ID, "join").click()
    # The welcome comes first on the joiner's own stream (the others see "joined").
    WebDriverWait(browser, 15).until(lambda b: f"* Welcome, {username}!" in text_of(b, "log"))


def test_chat_pages_in_two_tabs_talk_to_each_other(browser: Any, example: Callable[..., str]) -> None:
    url = example("chat")
    join_chat(browser, url, "ada")
    ada = browser.current_window_handle
    browser.switch_to.new_window("tab")
    join_chat(browser, url, "bob")
    browser.find_element(By.ID, "msg").send_keys("<script>alert(1)</script> & hi")
    browser.find_element(By.CSS_SELECTOR, "#f button").click()
    # Bob's message reaches his own stream and Ada's, shown as text, never as markup.
    expected = "bob: <script>alert(1)</script> & hi"
    WebDriverWait(browser, 15).until(lambda b: expected in text_of(b, "log"))
    browser.switch_to.window(ada)
    WebDriverWait(browser, 15).until(lambda b: expected in text_of(b, "log"))
    assert "* bob joined" in text_of(browser, "log")
    browser.switch_to.window(browser.window_handles[-1])
    browser.close()
    browser.switch_to.window(ada)
    # Closing Bob's tab ends his EventSource: the server notices and tells the room.
    WebDriverWait(browser, 15).until(lambda b: "* bob left" in text_of(b, "log"))
