"""Client address, scheme and host behind proxies: the per-call helpers, and the
server-wide ``forwarded_allow_ips`` from trusted and untrusted peers."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ServeApp
from helpers import RawClient

from h3green import H3, H3Event, Headers
from h3green.__main__ import _parser, main
from h3green.server import Config
from h3green.testing import TestClient
from h3green.utils import get_request_host, get_request_ip, get_request_protocol, get_request_url
from h3green.utils.forwarded import TrustedProxies, apply_forwarded, parse_forwarded

PROXY = "10.0.0.1"


def forwarded(
    spec: str, headers: list[tuple[str, str]], peer: str | None = PROXY
) -> tuple[str | None, str, str]:
    """(remote_addr, scheme, host) after the server-wide rule."""
    event = H3Event("GET", "/p?q=1", Headers([("host", "internal:8000"), *headers]), remote_addr=peer)
    apply_forwarded(event, spec)
    return event.remote_addr, event.scheme, event.host


# -- X-Forwarded-* ---------------------------------------------------------------------------------

XFF_CASES = [
    # (spec, headers, expected (addr, scheme, host))
    (
        "10.0.0.0/8",
        [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "example.com"),
        ],
        ("203.0.113.7", "https", "example.com"),
    ),
    # Untrusted peer: nothing is believed.
    (
        "192.168.0.0/16",
        [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "example.com"),
        ],
        (PROXY, "http", "internal:8000"),
    ),
    ("", [("x-forwarded-for", "203.0.113.7")], (PROXY, "http", "internal:8000")),
    # A client prepends a lie; its own proxy's entry stops the walk.
    ("10.0.0.0/8", [("x-forwarded-for", "127.0.0.1, 203.0.113.7")], ("203.0.113.7", "http", "internal:8000")),
    # A chain of trusted proxies is walked through.
    (
        "10.0.0.0/8",
        [("x-forwarded-for", "203.0.113.7, 10.0.0.2, 10.0.0.3")],
        ("203.0.113.7", "http", "internal:8000"),
    ),
    # Split over several header lines.
    (
        "10.0.0.0/8",
        [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "10.0.0.2")],
        ("203.0.113.7", "http", "internal:8000"),
    ),
    # "*" trusts everyone: the leftmost address.
    ("*", [("x-forwarded-for", "198.51.100.1, 203.0.113.7")], ("198.51.100.1", "http", "internal:8000")),
    # A malformed entry stops the walk: nothing left of it, nor it, is believed.
    ("10.0.0.0/8", [("x-forwarded-for", "203.0.113.7, not-an-ip")], (PROXY, "http", "internal:8000")),
    ("*", [("x-forwarded-for", "198.51.100.1, , 203.0.113.7")], ("203.0.113.7", "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "203.0.113.7:5555")], ("203.0.113.7", "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "[2001:db8::1]:5555")], ("2001:db8::1", "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "2001:db8::1")], ("2001:db8::1", "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "[203.0.113.7]")], (PROXY, "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "[2001:db8::1]x")], (PROXY, "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "[2001:db8::1")], (PROXY, "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "2001:db8::1:80:x")], (PROXY, "http", "internal:8000")),
    ("10.0.0.0/8", [("x-forwarded-for", "203.0.113.7:http")], (PROXY, "http", "internal:8000")),
    # Malformed scheme and host values are ignored.
    (
        "10.0.0.0/8",
        [("x-forwarded-proto", "javascript"), ("x-forwarded-host", "evil.com/path")],
        (PROXY, "http", "internal:8000"),
    ),
    (
        "10.0.0.0/8",
        [("x-forwarded-proto", "HTTPS"), ("x-forwarded-host", "[2001:db8::1]:8443")],
        (PROXY, "https", "[2001:db8::1]:8443"),
    ),
    ("10.0.0.0/8", [("x-forwarded-host", "a b.com")], (PROXY, "http", "internal:8000")),
    # Lists that line up with X-Forwarded-For: the chosen hop's value.
    (
        "10.0.0.0/8",
        [
            ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-host", "example.com, internal"),
        ],
        ("203.0.113.7", "https", "example.com"),
    ),
    # Lists that do not: the nearest (trusted) proxy's value.
    (
        "10.0.0.0/8",
        [("x-forwarded-for", "203.0.113.7, 10.0.0.2"), ("x-forwarded-proto", "https")],
        ("203.0.113.7", "https", "internal:8000"),
    ),
]


@pytest.mark.parametrize(("spec", "headers", "expected"), XFF_CASES)
def test_x_forwarded(spec: str, headers: list[tuple[str, str]], expected: tuple[str, str, str]) -> None:
    assert forwarded(spec, headers) == expected


# -- RFC 7239 Forwarded ---------------------------------------------------------------------------

FORWARDED_CASES = [
    ("for=203.0.113.7;proto=https;host=example.com", ("203.0.113.7", "https", "example.com")),
    ('for="[2001:db8::1]:4711";proto=https', ("2001:db8::1", "https", "internal:8000")),
    ("For=203.0.113.7;PROTO=https", ("203.0.113.7", "https", "internal:8000")),
    # A client-sent element on the left is not believed past the proxy's.
    (
        "for=127.0.0.1;host=admin.local, for=203.0.113.7;host=example.com",
        ("203.0.113.7", "http", "example.com"),
    ),
    # Garbage from the client does not spoil the proxy's element.
    ("garbage;;x, for=203.0.113.7;proto=https", ("203.0.113.7", "https", "internal:8000")),
    ('for="unterminated, for=203.0.113.7', (PROXY, "http", "internal:8000")),
    # A proxy that reports only the scheme and host.
    ("proto=https;host=example.com", (PROXY, "https", "example.com")),
    # Unknown or obfuscated nodes stop the walk; that element's proto still counts.
    ("for=unknown;proto=https", (PROXY, "https", "internal:8000")),
    ("for=_hidden", (PROXY, "http", "internal:8000")),
    # A repeated parameter makes the element malformed.
    ("for=203.0.113.7;for=198.51.100.1", (PROXY, "http", "internal:8000")),
    ('for=203.0.113.7;host="exa\\"mple"', ("203.0.113.7", "http", "internal:8000")),
    ("for=203.0.113.7;proto=ftp", ("203.0.113.7", "http", "internal:8000")),
    ("", (PROXY, "http", "internal:8000")),
]


@pytest.mark.parametrize(("value", "expected"), FORWARDED_CASES)
def test_forwarded_header(value: str, expected: tuple[str, str, str]) -> None:
    assert forwarded("10.0.0.0/8", [("forwarded", value)]) == expected


def test_forwarded_wins_over_x_forwarded_for() -> None:
    headers = [("forwarded", "for=203.0.113.7"), ("x-forwarded-for", "198.51.100.1")]
    assert forwarded("10.0.0.0/8", headers)[0] == "203.0.113.7"


def test_parse_forwarded() -> None:
    assert parse_forwarded('for="a,b";by=x, for=c') == [{"for": "a,b", "by": "x"}, {"for": "c"}]
    assert parse_forwarded('for="q\\"x";;, bad') == [{"for": 'q"x'}, None]


def test_a_unix_socket_peer_is_trusted_when_any_proxy_is() -> None:
    assert forwarded("127.0.0.1", [("x-forwarded-for", "203.0.113.7")], peer=None)[0] == "203.0.113.7"
    assert forwarded("", [("x-forwarded-for", "203.0.113.7")], peer=None)[0] is None


def test_trusted_proxies_spec() -> None:
    proxies = TrustedProxies(" 127.0.0.1 , ::1,10.0.0.0/8,, ")
    assert "10.1.2.3" in proxies and "::1" in proxies and "127.0.0.1" in proxies
    assert "11.0.0.1" not in proxies and "garbage" not in proxies and None not in proxies
    assert not TrustedProxies("") and TrustedProxies("*")
    assert None in TrustedProxies("*")
    for bad in ("nope", "10.0.0.1/8", "300.0.0.1"):
        with pytest.raises(ValueError, match="forwarded_allow_ips"):
            TrustedProxies(bad)
        with pytest.raises(ValueError, match="forwarded_allow_ips"):
            Config(forwarded_allow_ips=bad)


# -- per-call helpers (opt-in, H3's names) -------------------------------------------------------


def event_with(headers: list[tuple[str, str]], target: str = "/p?q=1") -> H3Event:
    return H3Event("GET", target, Headers([("host", "internal:8000"), *headers]), remote_addr="10.0.0.1")


def test_get_request_ip() -> None:
    event = event_with([("x-forwarded-for", "203.0.113.7, 10.0.0.2")])
    assert get_request_ip(event) == "10.0.0.1"
    assert get_request_ip(event, x_forwarded_for=True) == "203.0.113.7"
    assert (
        get_request_ip(event_with([("x-forwarded-for", "junk, 1.2.3.4")]), x_forwarded_for=True) == "10.0.0.1"
    )
    assert get_request_ip(event_with([]), x_forwarded_for=True) == "10.0.0.1"


def test_get_request_url_host_and_protocol() -> None:
    event = event_with([("x-forwarded-host", "example.com, internal"), ("x-forwarded-proto", "https")])
    assert get_request_url(event) == "http://internal:8000/p?q=1"
    assert (
        get_request_url(event, x_forwarded_host=True, x_forwarded_proto=True) == "https://example.com/p?q=1"
    )
    assert get_request_host(event, x_forwarded_host=True) == "example.com"
    assert get_request_protocol(event, x_forwarded_proto=True) == "https"
    bad = event_with([("x-forwarded-host", "evil.com/x"), ("x-forwarded-proto", "gopher")])
    assert get_request_url(bad, x_forwarded_host=True, x_forwarded_proto=True) == "http://internal:8000/p?q=1"
    absolute = event_with([], target="http://internal:8000/abs?x=1")
    assert get_request_url(absolute) == "http://internal:8000/abs?x=1"


# -- through the server ------------------------------------------------------------------------------


def whoami_app() -> H3:
    app = H3()

    @app.get("/whoami")
    def whoami(event: H3Event) -> object:
        return {"ip": event.remote_addr, "scheme": event.scheme, "url": event.url}

    return app


SPOOF = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https", "x-forwarded-host": "example.com"}


def test_trusted_peer_through_the_test_client() -> None:
    client = TestClient(whoami_app(), forwarded_allow_ips="127.0.0.1")
    assert client.get("/whoami", headers=SPOOF).json() == {
        "ip": "203.0.113.7",
        "scheme": "https",
        "url": "https://example.com/whoami",
    }


def test_untrusted_peer_through_the_test_client() -> None:
    client = TestClient(whoami_app(), remote_addr="198.51.100.9", forwarded_allow_ips="127.0.0.1")
    assert client.get("/whoami", headers=SPOOF).json() == {
        "ip": "198.51.100.9",
        "scheme": "http",
        "url": "http://testserver/whoami",
    }
    # The default trusts no one.
    assert TestClient(whoami_app()).get("/whoami", headers=SPOOF).json()["ip"] == "127.0.0.1"


@pytest.mark.live
@pytest.mark.parametrize(
    ("spec", "expected_ip"), [("127.0.0.1", "203.0.113.7"), ("10.0.0.0/8", "127.0.0.1"), ("", "127.0.0.1")]
)
def test_over_a_real_socket(serve_app: ServeApp, spec: str, expected_ip: str) -> None:
    client = RawClient(serve_app(whoami_app(), forwarded_allow_ips=spec).address)
    try:
        status, _, body = client.fetch("GET", "/whoami", headers=list(SPOOF.items()))
    finally:
        client.close()
    assert status == 200
    assert f'"ip":"{expected_ip}"'.encode() in body


def test_cli_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = _parser().parse_args(["m:app", "--forwarded-allow-ips", "10.0.0.0/8,::1"])
    assert args.forwarded_allow_ips == "10.0.0.0/8,::1"
    app_file = tmp_path / "fwd_app_h3g.py"
    app_file.write_text("from h3green import H3\napp = H3()\n")
    assert main([f"{app_file}:app", "--forwarded-allow-ips", "not-an-ip"]) == 2
    assert "forwarded_allow_ips: 'not-an-ip' is not an IP address" in capsys.readouterr().err
