"""examples/site.py: static pages, the upload form, the CORS API and the SSE clock, in
process, as a real process driven by httpx (``curl -F`` style uploads), and in headless
Chromium (the upload page, and ``fetch`` across two origins = two ports)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import httpx
import pytest
from helpers import REPO, start_cli

from h3green.testing import TestClient

ROOT = Path(REPO)
OTHER = "http://other.example"


def load_site(monkeypatch: pytest.MonkeyPatch, **env: str) -> types.ModuleType:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("examples.site", ROOT / "examples" / "site.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    module = load_site(monkeypatch, SITE_CORS_ORIGINS=OTHER, UPLOAD_LIMIT="100000", SITE_TICK="0.01")
    # In process, without monkey patching, the clock's time.sleep would block the loop.
    monkeypatch.setattr(module.time, "sleep", gevent.sleep)
    return TestClient(module.app)


# -- in process --------------------------------------------------------------------------------


def test_static_pages(site: TestClient) -> None:
    home = site.get("/")
    assert home.status == 200 and "<h1>h3green site</h1>" in home.text
    assert home.headers["content-type"] == "text/html; charset=utf-8"
    assert home.headers["cache-control"] == "public, max-age=60"
    css = site.get("/style.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert site.get("/style.css", headers={"if-none-match": css.headers["etag"]}).status == 304
    assert site.get("/upload.html").status == 200
    assert site.get("/nothing-here").status == 404


def test_upload(site: TestClient) -> None:
    request = httpx.Request(
        "POST",
        "http://testserver/upload",
        data={"note": "two files"},
        files=[("file", ("a.txt", b"alpha", "text/plain")), ("file", ("b.bin", b"\x00" * 1000))],
    )
    response = site.post(
        "/upload", data=request.read(), headers={"content-type": request.headers["content-type"]}
    )
    assert response.status == 200
    body = response.json()
    assert body["fields"] == {"note": "two files"}
    assert [(f["filename"], f["size"]) for f in body["files"]] == [("a.txt", 5), ("b.bin", 1000)]
    assert body["files"][0]["sha256"] == hashlib.sha256(b"alpha").hexdigest()


def test_upload_limit(site: TestClient) -> None:
    request = httpx.Request("POST", "http://testserver/upload", files={"file": ("big", b"x" * 200_000)})
    response = site.post(
        "/upload", data=request.read(), headers={"content-type": request.headers["content-type"]}
    )
    assert response.status == 413


def test_cors_api(site: TestClient) -> None:
    allowed = site.get("/api/time", headers={"origin": OTHER})
    assert allowed.headers["access-control-allow-origin"] == OTHER
    assert allowed.json()["client"] == "127.0.0.1"
    refused = site.get("/api/time", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in refused.headers
    preflight = site.options("/api/echo", headers={"origin": OTHER, "access-control-request-method": "POST"})
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    error = site.post("/api/echo", json=[1], headers={"origin": OTHER})
    assert error.status == 400 and error.headers["access-control-allow-origin"] == OTHER


def test_sse_clock(site: TestClient) -> None:
    with site.stream("GET", "/events") as stream:
        events = stream.iter_events()
        first, second = next(events), next(events)
    assert (first.event, first.id, second.id) == ("tick", "0", "1")
    assert len(first.data) == 8  # HH:MM:SS


# -- a real process, real clients ------------------------------------------------------------------


@pytest.fixture
def start_site() -> Iterator[Callable[..., str]]:
    procs: list[Any] = []

    def start(**env: str) -> str:
        proc, port = start_cli("examples.site:app", env={"SITE_TICK": "0.05", **env}, cwd=REPO)
        procs.append(proc)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.live
def test_httpx_upload_like_curl_f(start_site: Callable[..., str], tmp_path: Path) -> None:
    url = start_site()
    big = tmp_path / "big.bin"
    content = os.urandom(1024 * 1024) * 20
    big.write_bytes(content)
    with httpx.Client(timeout=30) as client, open(big, "rb") as upload:
        # curl -F note=hello -F file=@big.bin
        response = client.post(url + "/upload", data={"note": "hello"}, files={"file": ("big.bin", upload)})
    assert response.status_code == 200
    body = response.json()
    assert body["fields"] == {"note": "hello"}
    assert body["files"][0]["size"] == len(content)
    assert body["files"][0]["sha256"] == hashlib.sha256(content).hexdigest()


@pytest.mark.live
def test_httpx_static_api_and_stream(start_site: Callable[..., str]) -> None:
    url = start_site(SITE_CORS_ORIGINS=OTHER)
    with httpx.Client(timeout=10) as client:
        assert "h3green site" in client.get(url + "/").text
        ranged = client.get(url + "/style.css", headers={"range": "bytes=0-3"})
        assert ranged.status_code == 206 and ranged.content == b"body"
        api = client.get(url + "/api/time", headers={"origin": OTHER})
        assert api.headers["access-control-allow-origin"] == OTHER
        with client.stream("GET", url + "/events") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("event: tick")


# -- headless Chromium -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium and chromium-driver")
        pytest.skip("chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="h3green-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text_of(browser: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id).text  # type: ignore[no-any-return]


def wait_for(browser: Any, condition: Callable[[Any], bool]) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(browser, 15).until(condition)


@pytest.mark.live
def test_upload_page_in_the_browser(browser: Any, start_site: Callable[..., str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url = start_site()
    picked = tmp_path / "picked.txt"
    picked.write_bytes(b"chosen in the browser\n")
    browser.get(url + "/upload.html")
    browser.find_element(By.ID, "note").send_keys("héllo")
    browser.find_element(By.ID, "files").send_keys(str(picked))
    browser.find_element(By.ID, "send").click()
    wait_for(browser, lambda b: text_of(b, "result").startswith("200 "))
    result = text_of(browser, "result")
    assert '"note":"héllo"' in result
    assert '"filename":"picked.txt"' in result
    assert '"content_type":"text/plain"' in result
    assert hashlib.sha256(b"chosen in the browser\n").hexdigest() in result


@pytest.mark.live
def test_home_page_shows_the_sse_clock(browser: Any, start_site: Callable[..., str]) -> None:
    browser.get(start_site() + "/")
    wait_for(browser, lambda b: text_of(b, "clock").count(":") == 2)


@pytest.mark.live
def test_cross_origin_fetch_in_the_browser(browser: Any, start_site: Callable[..., str]) -> None:
    page = start_site()  # serves the page; its own API allows no other origin
    api = start_site(SITE_CORS_ORIGINS=page)  # allows the page's origin
    browser.get(f"{page}/cors.html?api={api}")
    wait_for(browser, lambda b: text_of(b, "get") != "-" and text_of(b, "post") != "-")
    assert text_of(browser, "get").startswith('ok {"time":')
    assert text_of(browser, "post") == f'ok {{"echo":{{"from":"{page}"}}}}'
    # The other way round: the API does not list the origin, so the browser blocks it.
    browser.get(f"{api}/cors.html?api={page}")
    wait_for(browser, lambda b: text_of(b, "get") != "-" and text_of(b, "post") != "-")
    assert text_of(browser, "get") == "blocked TypeError"
    assert text_of(browser, "post") == "blocked TypeError"
