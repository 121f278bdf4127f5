"""``StaticFiles`` and ``serve_static``: files, validators, ranges, precompressed
siblings, and every traversal attempt the issue lists, one by one."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServeApp
from helpers import RawClient
from helpers.wsgi import call, make_environ

from h3green import H3, H3Event, Headers
from h3green.errors import HTTPError
from h3green.testing import TestClient
from h3green.utils import StaticFiles, serve_static
from h3green.utils.cache import http_date
from h3green.utils.static import FileBody

CSS = b"body { color: green }\n"
DATA = bytes(range(256)) * 4  # 1 KiB, every byte value
JS = b"console.log('plain');\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "style.css").write_bytes(CSS)
    (root / "data.bin").write_bytes(DATA)
    (root / "empty.txt").write_bytes(b"")
    (root / "app.js").write_bytes(JS)
    (root / "app.js.br").write_bytes(b"BROTLI-BYTES")
    (root / "app.js.gz").write_bytes(b"GZIP-BYTES")
    (root / "only.txt").write_bytes(b"no siblings")
    (root / "archive.tar.gz").write_bytes(b"\x1f\x8b")
    (root / ".env").write_text("SECRET=1")
    (root / "%2e%2e").write_text("a file with a percent name")
    docs = root / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("<h1>docs</h1>")
    (docs / "guide.txt").write_text("guide")
    (root / "noindex").mkdir()
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "outdir").symlink_to(outside)
    (root / "alias.css").symlink_to(root / "style.css")
    (root / "app.js.br.link").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.fixture
def app(site: Path) -> H3:
    app = H3()
    app.mount("/assets", StaticFiles(site, max_age=3600))

    @app.get("/files/**:path")
    def files(event: H3Event) -> object:
        return serve_static(event, site, event.params["path"], precompressed=False)

    @app.get("/maybe/**:path")
    def maybe(event: H3Event) -> object:
        found = serve_static(event, site, event.params["path"], fallthrough=True)
        return "fallback" if found is None else found

    return app


@pytest.fixture
def client(app: H3) -> TestClient:
    return TestClient(app)


# -- plain files ---------------------------------------------------------------------------


def test_file_with_type_length_and_validators(client: TestClient, site: Path) -> None:
    response = client.get("/assets/style.css")
    assert response.status == 200
    assert response.body == CSS
    headers = response.headers
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert headers["content-length"] == str(len(CSS))
    assert "transfer-encoding" not in headers
    assert headers["accept-ranges"] == "bytes"
    assert headers["cache-control"] == "public, max-age=3600"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["last-modified"] == http_date(int((site / "style.css").stat().st_mtime))
    assert headers["etag"].startswith('"') and headers["etag"].endswith('"')


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("data.bin", "application/octet-stream"),
        ("archive.tar.gz", "application/gzip"),
        ("index.html", "text/html; charset=utf-8"),
    ],
)
def test_media_types_from_the_extension(client: TestClient, name: str, media_type: str) -> None:
    assert client.get(f"/assets/{name}").headers["content-type"] == media_type


def test_head_has_the_get_headers_and_no_body(client: TestClient) -> None:
    response = client.head("/assets/data.bin")
    assert response.status == 200
    assert response.body == b""
    assert response.headers["content-length"] == str(len(DATA))


def test_empty_file(client: TestClient) -> None:
    response = client.get("/assets/empty.txt")
    assert response.status == 200 and response.body == b""
    assert response.headers["content-length"] == "0"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_with_allow(client: TestClient, method: str) -> None:
    response = client.request(method, "/assets/style.css")
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["status"] == 405


def test_missing_file_is_a_json_404(client: TestClient) -> None:
    response = client.get("/assets/nope.css")
    assert response.status == 404
    assert response.json()["message"] == "Cannot find any file matching /nope.css"


def test_directory_serves_its_index(client: TestClient) -> None:
    assert client.get("/assets/").text == "<h1>home</h1>"
    assert client.get("/assets/docs/").text == "<h1>docs</h1>"
    assert client.get("/assets/docs/guide.txt").text == "guide"


def test_directory_without_slash_redirects_relatively(client: TestClient) -> None:
    response = client.get("/assets/docs?x=1")
    assert response.status == 301
    assert response.headers["location"] == "./docs/?x=1"
    assert client.get("/assets").headers["location"] == "./assets/"


def test_directory_without_index(client: TestClient, site: Path) -> None:
    assert client.get("/assets/noindex/").status == 404
    app = H3()
    app.mount("/s", StaticFiles(site, index=None))
    assert TestClient(app).get("/s/docs/").status == 404


def test_symlink_inside_the_directory_is_served(client: TestClient) -> None:
    assert client.get("/assets/alias.css").body == CSS


def test_dotfiles_are_hidden_unless_asked(client: TestClient, site: Path) -> None:
    assert client.get("/assets/.env").status == 404
    app = H3()
    app.mount("/s", StaticFiles(site, dotfiles=True))
    assert TestClient(app).get("/s/.env").text == "SECRET=1"


def test_serve_static_in_a_handler(client: TestClient) -> None:
    response = client.get("/files/docs/guide.txt")
    assert response.text == "guide"
    assert "vary" not in response.headers  # precompressed=False
    assert client.get("/files/nothing").status == 404
    assert client.get("/maybe/nothing").text == "fallback"
    assert client.get("/maybe/style.css").body == CSS


def test_middleware_with_fallthrough_serves_at_the_root(site: Path) -> None:
    app = H3()
    app.use(StaticFiles(site, fallthrough=True))
    app.get("/api", lambda e: {"api": True})
    app.post("/style.css", lambda e: "posted")
    client = TestClient(app)
    assert client.get("/style.css").body == CSS
    assert client.get("/").text == "<h1>home</h1>"
    assert client.get("/api").json() == {"api": True}
    assert client.post("/style.css").text == "posted"  # not GET/HEAD: falls through
    assert client.get("/missing").status == 404


def test_middleware_without_fallthrough_answers_everything(site: Path) -> None:
    app = H3()
    app.use(StaticFiles(site))
    app.get("/api", lambda e: "never")
    client = TestClient(app)
    assert client.get("/api").status == 404
    assert client.post("/style.css").status == 405


def test_bad_options_are_refused(site: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        StaticFiles(site / "style.css")
    with pytest.raises(ValueError, match="not a directory"):
        StaticFiles(site / "missing")
    for index in ("", "a/b", "..", "a\\b"):
        with pytest.raises(ValueError, match="index"):
            StaticFiles(site, index=index)
    with pytest.raises(ValueError, match="max_age"):
        StaticFiles(site, max_age=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        StaticFiles(site, chunk_size=0)
    assert repr(StaticFiles(site)) == f"<StaticFiles {str(site.resolve())!r}>"


# -- traversal: each case on its own --------------------------------------------------------

TRAVERSALS = [
    "/assets/../secret.txt",
    "/assets/../../secret.txt",
    "/assets/%2e%2e/secret.txt",
    "/assets/%2E%2E/secret.txt",
    "/assets/.%2e/secret.txt",
    "/assets/%2e%2e%2fsecret.txt",
    "/assets/..%2fsecret.txt",
    "/assets/%252e%252e/secret.txt",
    "/assets/%252e%252e%252fsecret.txt",
    "/assets/..%252fsecret.txt",
    "/assets/%25252e%25252e/secret.txt",
    "/assets/..%5csecret.txt",
    "/assets/%5c..%5csecret.txt",
    "/assets/..%255csecret.txt",
    "/assets/docs/..%5c..%5csecret.txt",
    "/assets/%2fetc%2fpasswd",
    "/assets//etc/passwd",
    "/assets/escape.txt",
    "/assets/outdir/secret.txt",
    "/assets/app.js.br.link",
    "/assets/%2e%2e",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_404(client: TestClient, target: str) -> None:
    response = client.get(target)
    assert response.status == 404, target
    assert b"SECRET" not in response.body and b"root:" not in response.body


def test_raw_backslash_is_404(client: TestClient) -> None:
    assert client.get("/assets/..\\secret.txt").status == 404
    assert client.get("/assets/docs\\..\\..\\secret.txt").status == 404


def test_nul_is_refused_before_any_file_lookup(client: TestClient) -> None:
    # The router refuses a NUL in any path (400) before StaticFiles sees it.
    assert client.get("/assets/style.css%00.txt").status == 400


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "..\\secret.txt", "style.css\x00", "/etc/passwd", "%2e%2e/secret.txt", "a/./b"],
)
def test_serve_static_refuses_unsafe_paths(site: Path, path: str) -> None:
    event = H3Event("GET", "/x", Headers())
    with pytest.raises(HTTPError) as caught:
        serve_static(event, site, path)
    assert caught.value.status == 404


def test_serve_static_refuses_an_absolute_path_to_a_real_file(site: Path) -> None:
    event = H3Event("GET", "/x", Headers())
    with pytest.raises(HTTPError) as caught:
        serve_static(event, site, str(site.parent / "secret.txt"))
    assert caught.value.status == 404


@pytest.mark.live
@pytest.mark.parametrize("target", [*TRAVERSALS, "/assets/..\\secret.txt"])
def test_traversal_is_404_over_a_real_socket(app: H3, serve_app: ServeApp, target: str) -> None:
    client = RawClient(serve_app(app).address)
    try:
        status, _, body = client.fetch("GET", target)
    finally:
        client.close()
    assert status == 404, target
    assert b"SECRET" not in body


# -- conditional requests -------------------------------------------------------------------


def test_if_none_match_gives_304(client: TestClient) -> None:
    etag = client.get("/assets/style.css").headers["etag"]
    response = client.get("/assets/style.css", headers={"if-none-match": f'"x", W/{etag}'})
    assert response.status == 304
    assert response.body == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "public, max-age=3600"


def test_if_modified_since_gives_304_and_loses_to_if_none_match(client: TestClient) -> None:
    modified = client.get("/assets/style.css").headers["last-modified"]
    assert client.get("/assets/style.css", headers={"if-modified-since": modified}).status == 304
    headers = {"if-modified-since": modified, "if-none-match": '"other"'}
    assert client.get("/assets/style.css", headers=headers).status == 200


# -- ranges ----------------------------------------------------------------------------------


def get_range(client: TestClient, value: str, **extra: str) -> tuple[int, Headers, bytes]:
    response = client.get("/assets/data.bin", headers={"range": value, **extra})
    return response.status, response.headers, response.body


@pytest.mark.parametrize(
    ("value", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, 1023),
        ("bytes=-5", 1019, 1023),
        ("bytes=-5000", 0, 1023),  # a suffix longer than the file: all of it
        ("bytes=1000-5000", 1000, 1023),  # past the end: cut at the end
        ("bytes=1023-1023", 1023, 1023),
        ("BYTES = 3-4", 3, 4),
    ],
)
def test_single_range_is_206(client: TestClient, value: str, first: int, last: int) -> None:
    status, headers, body = get_range(client, value)
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/1024"
    assert headers["content-length"] == str(last - first + 1)
    assert body == DATA[first : last + 1]


@pytest.mark.parametrize("value", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_is_416(client: TestClient, value: str) -> None:
    status, headers, body = get_range(client, value)
    assert status == 416
    assert headers["content-range"] == "bytes */1024"
    assert b"not satisfiable" in body


def test_any_range_of_an_empty_file_is_416(client: TestClient) -> None:
    for value in ("bytes=0-", "bytes=-1"):
        response = client.get("/assets/empty.txt", headers={"range": value})
        assert response.status == 416
        assert response.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize(
    "value",
    [
        "bytes=0-1,5-6",
        "bytes=0-1, 2000-3000",
        "bytes=5-2",
        "items=0-1",
        "bytes=abc",
        "bytes=-",
        "bytes",
        "bytes=1-2-3",
    ],
)
def test_multiple_or_invalid_ranges_give_the_whole_file(client: TestClient, value: str) -> None:
    status, headers, body = get_range(client, value)
    assert status == 200
    assert body == DATA
    assert "content-range" not in headers


def test_if_range(client: TestClient) -> None:
    head = client.get("/assets/data.bin").headers
    etag, modified = head["etag"], head["last-modified"]
    assert get_range(client, "bytes=0-1", **{"if-range": etag})[0] == 206
    assert get_range(client, "bytes=0-1", **{"if-range": modified})[0] == 206
    assert get_range(client, "bytes=0-1", **{"if-range": '"stale"'})[0] == 200
    assert get_range(client, "bytes=0-1", **{"if-range": "W/" + etag})[0] == 200  # strong only
    assert get_range(client, "bytes=0-1", **{"if-range": http_date(0)})[0] == 200


def test_head_with_range(client: TestClient) -> None:
    response = client.head("/assets/data.bin", headers={"range": "bytes=0-9"})
    assert response.status == 206
    assert response.headers["content-length"] == "10"
    assert response.body == b""


# -- precompressed siblings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "body", "coding"),
    [
        ("br", b"BROTLI-BYTES", "br"),
        ("gzip", b"GZIP-BYTES", "gzip"),
        ("gzip, deflate, br", b"BROTLI-BYTES", "br"),
        ("br;q=0, gzip", b"GZIP-BYTES", "gzip"),
        ("gzip;q=0.9, br;q=0.1", b"GZIP-BYTES", "gzip"),
        ("gzip;q=0.5, br;q=0.8", b"BROTLI-BYTES", "br"),
        ("*", b"BROTLI-BYTES", "br"),
        ("*;q=0.5, br;q=0", b"GZIP-BYTES", "gzip"),
        ("br;q=bad, gzip", b"GZIP-BYTES", "gzip"),
        ("identity", JS, None),
        ("br;q=0, gzip;q=0", JS, None),
        ("", JS, None),
    ],
)
def test_precompressed_sibling_by_accept_encoding(
    client: TestClient, accept: str, body: bytes, coding: str | None
) -> None:
    response = client.get("/assets/app.js", headers={"accept-encoding": accept})
    assert response.status == 200
    assert response.body == body
    assert response.headers.get("content-encoding") == coding
    # The type is the uncompressed file's; caches must key on Accept-Encoding.
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["vary"] == "Accept-Encoding"


def test_variants_have_distinct_etags(client: TestClient) -> None:
    plain = client.get("/assets/app.js").headers["etag"]
    brotli = client.get("/assets/app.js", headers={"accept-encoding": "br"}).headers["etag"]
    assert plain != brotli and brotli.endswith('-br"')
    response = client.get("/assets/app.js", headers={"accept-encoding": "br", "if-none-match": plain})
    assert response.status == 200


def test_no_sibling_or_precompressed_off(client: TestClient, site: Path) -> None:
    response = client.get("/assets/only.txt", headers={"accept-encoding": "br, gzip"})
    assert response.body == b"no siblings" and "content-encoding" not in response.headers
    app = H3()
    app.mount("/s", StaticFiles(site, precompressed=False))
    response = TestClient(app).get("/s/app.js", headers={"accept-encoding": "br"})
    assert response.body == JS and "vary" not in response.headers


def test_sibling_symlinked_outside_is_not_served(site: Path, tmp_path: Path) -> None:
    (site / "leak.txt").write_text("public")
    (site / "leak.txt.gz").symlink_to(tmp_path / "secret.txt")
    app = H3()
    app.mount("/s", StaticFiles(site))
    response = TestClient(app).get("/s/leak.txt", headers={"accept-encoding": "gzip"})
    assert response.text == "public"


# -- bodies -----------------------------------------------------------------------------------


def test_file_body_reads_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with open(path, "rb") as file:
        body = FileBody(file, 2, 7, chunk_size=3)
        assert list(body) == [b"xxx", b"xxx", b"x"]
        assert body.content_length == 7


def test_file_that_shrinks_while_sent_raises(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    file = open(path, "rb")  # noqa: SIM115
    body = FileBody(file, 0, 20, chunk_size=8)
    assert next(body) == b"x" * 8
    assert next(body) == b"xx"
    with pytest.raises(OSError, match="shrank"):
        next(body)
    body.close()
    assert file.closed


def test_file_removed_between_lookup_and_open_is_404(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from h3green.utils import static

    monkeypatch.setattr(static, "_open_regular", lambda path: None)
    app = H3()
    app.mount("/s", StaticFiles(site))
    assert TestClient(app).get("/s/style.css").status == 404


def test_through_the_wsgi_adapter(app: H3) -> None:
    result = call(app, make_environ("GET", "/assets/data.bin", headers={"range": "bytes=0-3"}))
    assert result.status == "206 Partial Content"
    assert result.header("content-length") == "4"
    assert result.body == DATA[:4]
    head = call(app, make_environ("HEAD", "/assets/data.bin"))
    assert head.header("content-length") == "1024" and head.body == b""


# -- a large file over a real socket ----------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


@pytest.fixture
def large_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "big" / "large.bin"
    path.parent.mkdir()
    with open(path, "wb") as out:
        block = os.urandom(1024 * 1024)
        for _ in range(100):
            out.write(block)
    yield path
    path.unlink()  # pytest keeps recent temporary directories: do not keep 100 MiB in them


@pytest.mark.live
def test_large_file_streams_with_flat_memory(large_file: Path, serve_app: ServeApp) -> None:
    app = H3()
    app.mount("/big", StaticFiles(large_file.parent))
    client = RawClient(serve_app(app).address, timeout=30)
    try:
        before = rss_kib()
        peak = before
        head = client.open("GET", "/big/large.bin")
        assert head.status_code == 200
        received = 0
        for piece in client.pieces():
            received += len(piece)
            if received % (8 * 1024 * 1024) < len(piece):
                peak = max(peak, rss_kib())
        peak = max(peak, rss_kib())
    finally:
        client.close()
    assert received == 100 * 1024 * 1024
    growth = peak - before
    print(f"serving a 100 MiB file: RSS {before} KiB -> peak {peak} KiB (+{growth} KiB)")
    # Read whole, the file alone would add 100 MiB; bounded chunks keep it to buffers.
    assert growth < 16 * 1024, f"RSS grew by {growth} KiB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_odd_corners(site: Path, tmp_path: Path) -> None:
    from h3green.utils.static import _open_regular

    assert _open_regular("/dev/null") is None  # opens, but is not a regular file
    (site / "dir.txt").write_text("plain")
    (site / "dir.txt.gz").mkdir()  # a sibling that cannot be opened as a file
    (site / "leaky").mkdir()
    (site / "leaky" / "index.html").symlink_to(tmp_path / "secret.txt")
    app = H3()
    app.mount("/s", StaticFiles(site, fallthrough=True))
    client = TestClient(app)
    assert client.get("/s/dir.txt", headers={"accept-encoding": "gzip;level=9"}).text == "plain"
    assert client.get("/s/leaky/").status == 404
    assert client.get("/s/missing").status == 404  # a mount has nothing to fall through to
    assert client.post("/s/dir.txt").status == 404


def test_same_answers_with_the_h11_driver(app: H3) -> None:
    client = TestClient(app, http_parser="h11")
    assert client.get("/assets/data.bin").body == DATA
    head = client.head("/assets/data.bin")
    assert (head.headers["content-length"], head.body) == ("1024", b"")
    part = client.get("/assets/data.bin", headers={"range": "bytes=-4"})
    assert (part.status, part.body) == (206, DATA[-4:])
    assert client.get("/assets/empty.txt").headers["content-length"] == "0"


@pytest.mark.live
@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_keep_alive_across_head_304_range_and_get(app: H3, serve_app: ServeApp, parser: str) -> None:
    client = RawClient(serve_app(app, http_parser=parser).address)
    try:
        status, headers, body = client.fetch("HEAD", "/assets/data.bin")
        assert (status, headers["content-length"], body) == (200, "1024", b"")
        status, _, body = client.fetch(
            "GET", "/assets/data.bin", headers=[("if-none-match", headers["etag"])]
        )
        assert (status, body) == (304, b"")
        status, headers, body = client.fetch("GET", "/assets/data.bin", headers=[("range", "bytes=1020-")])
        assert (status, headers["content-range"], body) == (206, "bytes 1020-1023/1024", DATA[1020:])
        status, headers, body = client.fetch("GET", "/assets/style.css")
        assert (status, body) == (200, CSS)
        assert "transfer-encoding" not in headers
    finally:
        client.close()
