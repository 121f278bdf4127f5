"""``handle_cache_headers`` and the validators shared with static files (RFC 9110 §13)."""

from __future__ import annotations

import datetime

import pytest
from conftest import ServeApp
from helpers import RawClient

from h3green import H3, H3Event
from h3green.testing import TestClient
from h3green.utils import etag_matches, handle_cache_headers
from h3green.utils.cache import http_date, parse_http_date

MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
CALLS: list[str] = []


def make_app() -> H3:
    app = H3()

    @app.get("/page")
    def page(event: H3Event) -> object:
        if handle_cache_headers(
            event, etag='"v1"', modified_time=MTIME, max_age=60, cache_control=["public"]
        ):
            return None
        CALLS.append("rendered")
        return {"page": 1}

    @app.get("/dated")
    def dated(event: H3Event) -> object:
        when = datetime.datetime.fromtimestamp(MTIME, datetime.UTC)
        return None if handle_cache_headers(event, modified_time=when) else "fresh"

    @app.get("/plain")
    def plain(event: H3Event) -> object:
        return None if handle_cache_headers(event) else "always"

    @app.post("/page")
    def post(event: H3Event) -> object:
        return None if handle_cache_headers(event, etag='"v1"') else "posted"

    return app


client = TestClient(make_app())


def test_first_request_gets_validators_and_cache_control() -> None:
    response = client.get("/page")
    assert response.status == 200
    assert response.json() == {"page": 1}
    assert response.headers["etag"] == '"v1"'
    assert response.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert response.headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize("if_none_match", ['"v1"', 'W/"v1"', '"v0", "v1"', '"v0",W/"v1" , "v2"', "*"])
def test_if_none_match_gives_304_weakly_with_lists_and_star(if_none_match: str) -> None:
    response = client.get("/page", headers={"if-none-match": if_none_match})
    assert response.status == 304
    assert response.body == b""
    # RFC 9110 §15.4.5: a 304 carries the validators and Cache-Control a 200 would.
    assert response.headers["etag"] == '"v1"'
    assert response.headers["cache-control"] == "public, max-age=60"
    assert "content-type" not in response.headers


def test_if_none_match_mismatch_renders() -> None:
    response = client.get("/page", headers={"if-none-match": '"v0", W/"v2"'})
    assert response.status == 200


def test_if_modified_since_not_later_than_modification_renders_304() -> None:
    assert client.get("/page", headers={"if-modified-since": http_date(MTIME)}).status == 304
    assert client.get("/page", headers={"if-modified-since": http_date(MTIME + 3600)}).status == 304
    assert client.get("/page", headers={"if-modified-since": http_date(MTIME - 1)}).status == 200


def test_if_none_match_wins_over_if_modified_since() -> None:
    # §13.2.2: If-Modified-Since is ignored when If-None-Match is present.
    headers = {"if-none-match": '"other"', "if-modified-since": http_date(MTIME)}
    assert client.get("/page", headers=headers).status == 200
    headers = {"if-none-match": '"v1"', "if-modified-since": http_date(MTIME - 100)}
    assert client.get("/page", headers=headers).status == 304


def test_invalid_date_is_ignored() -> None:
    assert client.get("/page", headers={"if-modified-since": "yesterday"}).status == 200
    assert client.get("/dated", headers={"if-modified-since": "Tue, 99 Nov 2023"}).status == 200


def test_datetime_modified_time() -> None:
    response = client.get("/dated", headers={"if-modified-since": http_date(MTIME)})
    assert response.status == 304
    assert response.headers["last-modified"] == http_date(MTIME)


def test_no_validators_never_304() -> None:
    response = client.get("/plain", headers={"if-none-match": "*", "if-modified-since": http_date(MTIME)})
    assert response.status == 200 and response.text == "always"
    assert "etag" not in response.headers and "cache-control" not in response.headers


def test_only_get_and_head_become_304() -> None:
    assert client.post("/page", headers={"if-none-match": '"v1"'}).text == "posted"
    assert client.head("/page", headers={"if-none-match": '"v1"'}).status == 304


def test_handler_is_skipped_on_304() -> None:
    CALLS.clear()
    client.get("/page", headers={"if-none-match": '"v1"'})
    assert CALLS == []


def test_bad_arguments_are_refused() -> None:
    event = H3Event("GET", "/", __import__("h3green").Headers())
    with pytest.raises(ValueError, match="quoted string"):
        handle_cache_headers(event, etag="v1")
    with pytest.raises(ValueError, match="quoted string"):
        handle_cache_headers(event, etag='"a"b"')
    with pytest.raises(ValueError, match="max_age"):
        handle_cache_headers(event, max_age=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        handle_cache_headers(event, modified_time=datetime.datetime(2024, 1, 1))


def test_etag_matches_strong_and_weak() -> None:
    assert etag_matches('"a"', 'W/"a"')
    assert not etag_matches(None, '"a"')
    assert not etag_matches('W/"a"', '"a"', weak=False)
    assert not etag_matches('"a"', 'W/"a"', weak=False)
    assert etag_matches('"b", "a"', '"a"', weak=False)
    assert etag_matches("*", '"a"', weak=False)


def test_parse_http_date_forms() -> None:
    assert parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT") == MTIME
    assert parse_http_date("Tue, 14 Nov 2023 22:13:20 -0000") == MTIME  # naive: taken as GMT
    assert parse_http_date("") is None
    assert parse_http_date(None) is None
    assert parse_http_date("garbage") is None


def test_etag_without_conditional_headers_renders() -> None:
    app = H3()
    app.get("/", lambda e: None if handle_cache_headers(e, etag='W/"w"') else "fresh")
    response = TestClient(app).get("/")
    assert response.text == "fresh" and response.headers["etag"] == 'W/"w"'


@pytest.mark.live
def test_304_over_a_real_socket_keeps_the_connection(serve_app: ServeApp) -> None:
    client = RawClient(serve_app(make_app()).address)
    try:
        status, headers, body = client.fetch("GET", "/page", headers=[("if-none-match", '"v1"')])
        assert (status, body, headers["etag"]) == (304, b"", '"v1"')
        assert "content-length" not in headers and "transfer-encoding" not in headers
        status, _, body = client.fetch("GET", "/page")
        assert (status, body) == (200, b'{"page":1}')
    finally:
        client.close()
