"""Sessions in sealed cookies: round trips, tampering, rotation, expiry, chunks, stores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServeApp
from helpers import RawClient, free_port, wait_until

from h3green import H3, H3Event, Headers, HTTPError, Response
from h3green.testing import TestClient, TestResponse
from h3green.utils import MemoryStore, RedisStore, Session, use_session
from h3green.utils import session as session_module

SECRET = "s" * 32
OTHER = "o" * 32


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cookie_pairs(set_cookies: list[str]) -> dict[str, str]:
    """What a browser keeps from *set_cookies* (an empty value with Max-Age=0 deletes)."""
    jar: dict[str, str] = {}
    for header in set_cookies:
        name, _, rest = header.partition("=")
        value = rest.split(";")[0]
        if "Max-Age=0" in header:
            jar[name] = ""
        else:
            jar[name] = value
    return jar


def cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in jar.items() if value)


def event_with(jar: dict[str, str] | None = None) -> H3Event:
    headers = Headers([("cookie", cookie_header(jar))] if jar else [])
    return H3Event("GET", "/", headers)


def staged_jar(event: H3Event) -> dict[str, str]:
    return cookie_pairs(event.res.headers.getall("set-cookie"))


def new_session(**options: Any) -> tuple[Session, dict[str, str]]:
    event = event_with()
    session = use_session(event, secret=options.pop("secret", SECRET), **options)
    return session, staged_jar(event)


# -- the basics ---------------------------------------------------------------------------


def test_new_session_sets_its_cookie_at_once_with_safe_defaults() -> None:
    event = event_with()
    session = use_session(event, secret=SECRET)
    assert session.data == {} and len(session.id) >= 32
    (header,) = event.res.headers.getall("set-cookie")
    assert header.startswith("h3=gAAAAA")
    for attribute in ("Path=/", "SameSite=Lax", "Secure", "HttpOnly"):
        assert attribute in header.split("; ")
    assert "Max-Age" not in header
    assert use_session(event, secret=SECRET) is session  # one session per request and name


def test_data_round_trips_and_an_unchanged_session_sends_no_cookie() -> None:
    session, jar = new_session()
    event = event_with(jar)
    same = use_session(event, secret=SECRET)
    assert same.id == session.id and same.data == {}
    assert event.res.headers.getall("set-cookie") == []
    same.update({"user": "ada"}, visits=1)
    jar = staged_jar(event)
    later = event_with(jar)
    again = use_session(later, secret=SECRET)
    assert again.data == {"user": "ada", "visits": 1} and again.id == session.id
    assert later.res.headers.getall("set-cookie") == []
    assert repr(again).startswith("<Session ") and "user" in repr(again)


def test_each_save_replaces_the_staged_session_cookie_and_keeps_others() -> None:
    event = event_with()
    event.set_cookie("theme", "dark")
    session = use_session(event, secret=SECRET)
    session.update(a=1)
    session.update(b=2)
    cookies = event.res.headers.getall("set-cookie")
    assert [c.partition("=")[0] for c in cookies] == ["theme", "h3"]
    assert use_session(event_with(staged_jar(event)), secret=SECRET).data == {"a": 1, "b": 2}


def test_update_without_arguments_saves_in_place_changes() -> None:
    session, _ = new_session()
    event = session._event
    session.data["cart"] = [1, 2]
    session.update()
    assert use_session(event_with(staged_jar(event)), secret=SECRET).data == {"cart": [1, 2]}


def test_clear_starts_over_under_a_new_id() -> None:
    session, jar = new_session()
    event = event_with(jar)
    current = use_session(event, secret=SECRET)
    current.update(user="ada")
    old_id = current.id
    current.clear()
    assert current.id != old_id and current.data == {}
    after = use_session(event_with(staged_jar(event)), secret=SECRET)
    assert after.id == current.id and after.data == {}
    assert session.id == old_id


def test_secure_can_be_turned_off_for_development_and_attributes_are_checked() -> None:
    event = event_with()
    use_session(event, secret=SECRET, cookie={"secure": False, "path": "/app", "samesite": "strict"})
    header = event.res.headers.get("set-cookie") or ""
    assert "Secure" not in header.split("; ") and "Path=/app" in header and "SameSite=Strict" in header
    with pytest.raises(ValueError, match="unknown session cookie attribute"):
        use_session(event_with(), secret=SECRET, cookie={"max_age": 3})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": "short"}, "at least 32 characters"),
        ({"secret": []}, "secret list is empty"),
        ({"secret": [SECRET, "short"]}, "at least 32 characters"),
        ({"secret": SECRET, "name": "bad name"}, "not an HTTP token"),
        ({"secret": SECRET, "max_age": 0}, "max_age must be > 0"),
        ({"secret": SECRET, "idle_timeout": -1}, "idle_timeout must be > 0"),
        ({"secret": SECRET, "chunk_size": 10}, "chunk_size must be >= 100"),
    ],
)
def test_misconfiguration_is_a_precise_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        use_session(event_with(), **options)


def test_data_that_is_not_json_is_refused_at_update() -> None:
    session, _ = new_session()
    with pytest.raises(TypeError):
        session.update(when=object())


def test_missing_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    session_module._sealer.cache_clear()
    monkeypatch.setitem(sys.modules, "cryptography", None)
    try:
        with pytest.raises(RuntimeError, match=r"h3green\[session\]"):
            use_session(event_with(), secret=SECRET)
    finally:
        session_module._sealer.cache_clear()


# -- tampering ----------------------------------------------------------------------------


def flip(text: str, index: int) -> str:
    char = "A" if text[index] != "A" else "B"
    return text[:index] + char + text[index + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda token: flip(token, len(token) // 2), id="flipped-byte"),
        pytest.param(lambda token: flip(token, 10), id="flipped-timestamp"),
        pytest.param(lambda token: token[:-20], id="truncated"),
        pytest.param(lambda token: token[:40] + "AAAA" + token[40:], id="inserted"),
        pytest.param(lambda token: "garbage", id="garbage"),
        pytest.param(lambda token: "h\u00e9llo", id="non-ascii"),
    ],
)
def test_a_tampered_cookie_is_a_fresh_session_never_an_error(tamper: Any) -> None:
    session, jar = new_session()
    session.update(role="user")
    jar = staged_jar(session._event)
    event = event_with({"h3": tamper(jar["h3"])})
    fresh = use_session(event, secret=SECRET)
    assert fresh.id != session.id and fresh.data == {}
    assert event.res.headers.get("set-cookie", "").startswith("h3=gAAAAA")


def test_old_secret_after_rotation() -> None:
    old_session, jar = new_session(secret=OTHER)
    old_session.update(user="ada")
    jar = staged_jar(old_session._event)
    # Rotation: the new secret seals, the old one still unseals.
    event = event_with(jar)
    rotated = use_session(event, secret=[SECRET, OTHER])
    assert rotated.data == {"user": "ada"}
    rotated.update(seen=True)
    resealed = staged_jar(event)
    # Once the old secret is dropped, only cookies sealed with the new one still work.
    assert use_session(event_with(resealed), secret=SECRET).data == {"user": "ada", "seen": True}
    assert use_session(event_with(jar), secret=SECRET).data == {}
    # A stranger's secret unseals nothing.
    assert use_session(event_with(resealed), secret="x" * 40).data == {}


def test_a_cookie_sealed_by_us_in_another_format_is_a_fresh_session() -> None:
    sealer = session_module._sealer((SECRET,))
    for plain in (b"not json", b'{"i": 5, "c": 0, "t": 0, "d": {}}', b'{"i": "x", "c": 0, "t": 0}', b"[]"):
        token = sealer.encrypt(plain).decode()
        session = use_session(event_with({"h3": token}), secret=SECRET)
        assert session.id != "x" and session.data == {}


# -- expiry -------------------------------------------------------------------------------


def test_max_age_ends_the_session_and_sets_cookie_max_age() -> None:
    clock = FakeClock()
    session, jar = new_session(max_age=60, clock=clock)
    assert "Max-Age=60" in session._event.res.headers["set-cookie"]
    clock.now += 30
    event = event_with(jar)
    assert use_session(event, secret=SECRET, max_age=60, clock=clock).id == session.id
    use_session(event, secret=SECRET, max_age=60, clock=clock).update(x=1)
    assert "Max-Age=30" in event.res.headers["set-cookie"]  # what is left of the 60 s
    clock.now += 30
    assert use_session(event_with(jar), secret=SECRET, max_age=60, clock=clock).id != session.id


def test_idle_timeout_expires_quiet_sessions_and_renews_active_ones() -> None:
    clock = FakeClock()
    options: dict[str, Any] = {"idle_timeout": 100, "clock": clock}
    session, jar = new_session(**options)
    clock.now += 40  # under half the timeout: no renewal
    event = event_with(jar)
    assert use_session(event, secret=SECRET, **options).id == session.id
    assert event.res.headers.getall("set-cookie") == []
    clock.now += 20  # past half: the lease is renewed
    event = event_with(jar)
    assert use_session(event, secret=SECRET, **options).id == session.id
    renewed = staged_jar(event)
    assert renewed["h3"] != jar["h3"]
    clock.now += 99  # 159 s after the start, 99 s after the renewal
    assert use_session(event_with(renewed), secret=SECRET, **options).id == session.id
    clock.now += 101
    assert use_session(event_with(renewed), secret=SECRET, **options).id != session.id


# -- chunked cookies ----------------------------------------------------------------------


def test_large_sessions_span_chunk_cookies_and_round_trip() -> None:
    session, _ = new_session(chunk_size=500)
    blob = "x" * 1800
    session.update(blob=blob)
    jar = staged_jar(session._event)
    assert jar["h3"].startswith("__chunked__")
    count = int(jar["h3"].removeprefix("__chunked__"))
    assert count >= 4 and all(len(jar[f"h3.{i}"]) <= 500 for i in range(1, count + 1))
    event = event_with(jar)
    again = use_session(event, secret=SECRET, chunk_size=500)
    assert again.data == {"blob": blob}
    # Shrinking drops the chunks the browser would otherwise join again.
    again.clear()
    shrunk = staged_jar(event)
    assert shrunk["h3"].startswith("gAAAAA")
    assert all(shrunk[f"h3.{i}"] == "" for i in range(1, count + 1))
    browser = {**jar, **shrunk}
    assert use_session(event_with(browser), secret=SECRET, chunk_size=500).id == again.id


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda jar: {**jar, "h3.1": jar["h3.2"], "h3.2": jar["h3.1"]}, id="swapped"),
        pytest.param(lambda jar: {k: v for k, v in jar.items() if k != "h3.3"}, id="missing"),
        pytest.param(lambda jar: {**jar, "h3": "__chunked__0"}, id="zero-chunks"),
        pytest.param(lambda jar: {**jar, "h3": "__chunked__99"}, id="too-many"),
        pytest.param(lambda jar: {**jar, "h3": "__chunked__x"}, id="not-a-number"),
    ],
)
def test_damaged_chunks_are_a_fresh_session(damage: Any) -> None:
    session, _ = new_session(chunk_size=200)
    session.update(blob="y" * 900)
    jar = staged_jar(session._event)
    fresh = use_session(event_with(damage(jar)), secret=SECRET, chunk_size=200)
    assert fresh.id != session.id and fresh.data == {}


def test_a_session_too_large_for_max_chunks_says_to_use_a_store() -> None:
    session, _ = new_session(chunk_size=200, max_chunks=2)
    with pytest.raises(ValueError, match="keep large sessions in a store"):
        session.update(blob="z" * 1000)


# -- server-side store --------------------------------------------------------------------


def test_a_store_keeps_the_data_out_of_the_cookie() -> None:
    store = MemoryStore()
    session, _ = new_session(store=store)
    session.update(secret_note="n" * 5000)
    jar = staged_jar(session._event)
    assert "h3.1" not in jar and len(jar["h3"]) < 300 and len(store) == 1
    event = event_with(jar)
    again = use_session(event, secret=SECRET, store=store)
    assert again.data == {"secret_note": "n" * 5000}
    again.data["secret_note"] = "changed but not saved"
    assert store.get(again.id) == {"secret_note": "n" * 5000}
    again.clear()
    assert store.get(session.id) is None
    # Data the store no longer holds: a fresh session.
    store.delete(again.id)
    assert use_session(event_with(staged_jar(event)), secret=SECRET, store=store).id != again.id


def test_memory_store_bounds_and_expires_entries() -> None:
    clock = FakeClock()
    store = MemoryStore(2, clock=clock)
    store.set("a", {"n": 1}, ttl=10)
    store.set("b", {"n": 2}, ttl=None)
    store.set("a", {"n": 3}, ttl=10)  # re-saving makes "a" the newest
    store.set("c", {"n": 4}, ttl=None)
    assert store.get("b") is None and store.get("a") == {"n": 3} and len(store) == 2
    clock.now += 10
    assert store.get("a") is None and store.get("c") == {"n": 4}
    store.delete("missing")
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(0)


def test_store_ttl_follows_the_session_limits() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    session, _ = new_session(store=store, max_age=50, idle_timeout=20, clock=clock)
    clock.now += 19
    assert store.get(session.id) == {}
    clock.now += 1
    assert store.get(session.id) is None


# -- through the app: error responses and real framing ------------------------------------


def make_app() -> H3:
    app = H3()
    options: dict[str, Any] = {"secret": SECRET, "cookie": {"secure": False}}

    @app.get("/count")
    def count(event: H3Event) -> dict[str, Any]:
        session = use_session(event, **options)
        session.update(count=session.data.get("count", 0) + 1)
        return {"count": session.data["count"]}

    @app.get("/peek")
    def peek(event: H3Event) -> dict[str, Any]:
        return use_session(event, **options).data

    @app.get("/forbidden")
    def forbidden(event: H3Event) -> None:
        use_session(event, **options)
        raise HTTPError(403, "no")

    @app.get("/crash")
    def crash(event: H3Event) -> None:
        use_session(event, **options)
        raise RuntimeError("boom")

    @app.get("/own-cookie")
    def own_cookie(event: H3Event) -> Response:
        use_session(event, **options)
        return Response("ok", headers=[("set-cookie", "theme=dark; Path=/")])

    return app


def jar_from(response: TestResponse | dict[str, str], jar: dict[str, str]) -> dict[str, str]:
    headers = response.headers.getall("set-cookie") if isinstance(response, TestResponse) else []
    return {**jar, **cookie_pairs(headers)}


def test_the_session_cookie_lands_on_error_responses() -> None:
    client = TestClient(make_app())
    for path, status in (("/forbidden", 403), ("/crash", 500)):
        response = client.get(path)
        assert response.status == status
        assert response.headers.get("set-cookie", "").startswith("h3=gAAAAA")
    response = client.get("/own-cookie")
    cookies = response.headers.getall("set-cookie")
    assert len(cookies) == 2 and any(c.startswith("h3=") for c in cookies) and "theme=dark; Path=/" in cookies


def test_a_session_counts_across_requests_through_the_test_client() -> None:
    client = TestClient(make_app())
    jar: dict[str, str] = {}
    for expected in (1, 2, 3):
        response = client.get("/count", headers={"cookie": cookie_header(jar)} if jar else None)
        assert response.json() == {"count": expected}
        jar = jar_from(response, jar)
    response = client.get("/peek", headers={"cookie": cookie_header(jar)})
    assert response.json() == {"count": 3} and "set-cookie" not in response.headers


@pytest.mark.live
def test_a_session_over_a_real_socket(serve_app: ServeApp) -> None:
    server = serve_app(make_app())
    client = RawClient(server.address)
    try:
        status, headers, body = client.fetch("GET", "/count")
        assert status == 200 and json.loads(body) == {"count": 1}
        cookie = headers["set-cookie"].split(";")[0]
        status, headers, body = client.fetch("GET", "/count", headers=[("cookie", cookie)])
        assert json.loads(body) == {"count": 2}
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _no_leftover_cache() -> Iterator[None]:
    yield
    assert session_module._sealer.cache_info().currsize <= 32


# -- Redis --------------------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A throwaway redis-server on an ephemeral port (Debian's, from apt) and a client."""
    redis = pytest.importorskip("redis")
    binary = shutil.which("redis-server")
    if binary is None:  # pragma: no cover - CI installs it
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(ready, what="redis-server to accept connections")
        yield client
    finally:
        client.close()
        proc.kill()
        proc.wait()


@pytest.mark.live
def test_a_redis_store_shares_sessions_and_lets_redis_expire_them(redis_client: Any) -> None:
    store = RedisStore(redis_client, prefix="test:")
    session, _ = new_session(store=store, idle_timeout=60)
    session.update(user="ada")
    jar = staged_jar(session._event)
    assert redis_client.pttl(f"test:{session.id}") > 59_000
    assert use_session(event_with(jar), secret=SECRET, store=store, idle_timeout=60).data == {"user": "ada"}
    store.set("no-ttl", {"a": 1}, None)
    assert redis_client.ttl("test:no-ttl") == -1 and store.get("no-ttl") == {"a": 1}
    redis_client.set("test:odd", "[1, 2]")
    assert store.get("odd") is None and store.get("missing") is None
    session.clear()
    assert redis_client.exists(f"test:{session.id}") == 1
    store.delete(session.id)
    assert store.get(session.id) is None
