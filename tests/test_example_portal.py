"""examples/portal.py over real sockets, with examples/upstream.py as the proxied service."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import gevent
import pytest
from conftest import ServeApp
from helpers import REPO, RawClient, start_cli

from examples import portal, upstream
from h3green import Server

pytestmark = pytest.mark.live


@pytest.fixture
def site(serve_app: ServeApp, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setattr(upstream, "INTERVAL", 0.02)
    # What monkey patching does for the example when it runs as a program.
    monkeypatch.setattr(vars(upstream)["time"], "sleep", gevent.sleep)
    service = serve_app(upstream.app)
    host, port = service.address
    monkeypatch.setattr(portal, "UPSTREAM", f"http://{host}:{port}")
    monkeypatch.setattr(portal, "NOTES", [])
    return serve_app(portal.app)


class Browser:
    """A RawClient that keeps cookies, the way a browser would for one site."""

    def __init__(self, server: Server) -> None:
        self.client = RawClient(server.address)
        self.cookies: dict[str, str] = {}

    def fetch(
        self, method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        sent = list(headers or [])
        if self.cookies:
            sent.append(("cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items())))
        status, received, data = self.client.fetch(method, target, body, sent)
        if "set-cookie" in received:
            name, _, value = received["set-cookie"].split(";")[0].partition("=")
            self.cookies[name] = value
        return status, received, data

    def form(self, target: str, fields: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        body = urlencode(fields).encode()
        return self.fetch("POST", target, body, [("content-type", "application/x-www-form-urlencoded")])

    def close(self) -> None:
        self.client.close()


def test_login_session_notes_and_logout(site: Server) -> None:
    browser = Browser(site)
    try:
        status, headers, page = browser.fetch("GET", "/")
        assert status == 200 and b'action="/login"' in page and b'new EventSource("/api/ticks")' in page
        assert "HttpOnly" in headers["set-cookie"] and "Secure" not in headers["set-cookie"]
        assert browser.form("/login", {"username": "ada", "password": "wrong"})[1]["location"] == "/?error=1"
        assert b'id="error"' in browser.fetch("GET", "/?error=1")[2]
        anonymous = browser.cookies["portal"]
        status, headers, _ = browser.form("/login", {"username": "ada", "password": "lovelace"})
        assert status == 303 and headers["location"] == "/" and browser.cookies["portal"] != anonymous
        assert b'<b id="user">ada</b>' in browser.fetch("GET", "/")[2]

        note = json.dumps({"text": "  hello  ", "tags": ["a"]}).encode()
        status, _, body = browser.fetch("POST", "/notes", note, [("content-type", "application/json")])
        assert status == 201 and json.loads(body) == {"text": "hello", "tags": ["a"], "by": "ada"}
        status, _, body = browser.fetch(
            "POST", "/notes", b'{"text": ""}', [("content-type", "application/json")]
        )
        assert status == 400 and json.loads(body)["data"]["issues"][0]["message"].startswith("text must be")
        assert browser.fetch("POST", "/notes", b"[1]", [("content-type", "application/json")])[0] == 400

        browser.form("/logout", {})
        assert b'action="/login"' in browser.fetch("GET", "/")[2]
        assert browser.fetch("POST", "/notes", note, [("content-type", "application/json")])[0] == 401
    finally:
        browser.close()


def test_admin_is_behind_basic_auth(site: Server) -> None:
    browser = Browser(site)
    try:
        status, headers, _ = browser.fetch("GET", "/admin")
        assert status == 401 and headers["www-authenticate"] == 'Basic realm="portal admin", charset="UTF-8"'
        token = base64.b64encode(b"admin:admin").decode()
        status, _, page = browser.fetch("GET", "/admin", headers=[("authorization", f"Basic {token}")])
        assert status == 200 and b"<h1>Admin</h1>" in page
    finally:
        browser.close()


def test_api_is_proxied_and_the_tick_stream_relayed(site: Server) -> None:
    browser = Browser(site)
    try:
        status, _, body = browser.fetch("GET", "/api/status")
        assert status == 200 and json.loads(body)["service"] == "clock"
    finally:
        browser.close()
    stream = RawClient(site.address)
    try:
        assert stream.open("GET", "/api/ticks").status_code == 200
        events = stream.events()
        ticks = [json.loads(next(events).data)["tick"] for _ in range(3)]
        assert ticks == [1, 2, 3]
    finally:
        stream.close()


def stop(proc: Any) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_both_examples_as_processes_relay_ticks() -> None:
    service, service_port = start_cli("examples.upstream:app", env={"TICK_INTERVAL": "0.02"}, cwd=REPO)
    try:
        site, site_port = start_cli(
            "examples.portal:app", env={"UPSTREAM_URL": f"http://127.0.0.1:{service_port}"}, cwd=REPO
        )
        try:
            stream = RawClient(("127.0.0.1", site_port), timeout=10)
            try:
                assert stream.open("GET", "/api/ticks").status_code == 200
                events = stream.events()
                assert [json.loads(next(events).data)["tick"] for _ in range(2)] == [1, 2]
            finally:
                stream.close()
        finally:
            stop(site)
    finally:
        stop(service)
