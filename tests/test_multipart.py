"""``multipart/form-data`` through ``event.read_form()``: fields, uploads, limits,
malformed bodies, cleanup of temporary files, and a 100 MiB upload with flat memory."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import h11
import httpx
import pytest
from conftest import ServeApp
from gevent import socket as gsocket
from helpers import wait_until
from helpers.wsgi import call, make_environ

from h3green import H3, H3Event, HTTPError
from h3green.testing import TestClient, TestResponse
from h3green.utils import FormData, UploadFile

UPLOADS: list[UploadFile] = []


def encode(data: Any = None, files: Any = None) -> tuple[bytes, str]:
    """A multipart body as browsers and ``curl -F`` build it (httpx's encoder)."""
    if not files:
        # httpx sends fields alone urlencoded; an empty part that is dropped after
        # encoding keeps its multipart encoder.
        body, ctype = encode(data, {"drop": ("", b"")})
        boundary = ctype.partition("boundary=")[2].encode()
        head, _, _ = body.rpartition(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="drop"')
        return head + b"--" + boundary + b"--\r\n", ctype
    request = httpx.Request("POST", "http://testserver/", data=data, files=files)
    return request.read(), request.headers["content-type"]


def describe(form: FormData) -> list[Any]:
    out: list[Any] = []
    for name, value in form.items():
        if isinstance(value, UploadFile):
            UPLOADS.append(value)
            out.append(
                [
                    name,
                    {
                        "filename": value.filename,
                        "type": value.content_type,
                        "size": value.size,
                        "content": value.read().decode("latin-1"),
                    },
                ]
            )
        else:
            out.append([name, value])
    return out


def make_app() -> H3:
    app = H3()

    @app.post("/form")
    def form(event: H3Event) -> object:
        limits = {k: int(v) for k, v in event.query.items()}
        return describe(event.read_form(**limits))

    @app.post("/big")
    def big(event: H3Event) -> object:
        form = event.read_form(max_size=200 * 1024 * 1024)
        upload = form["file"]
        assert isinstance(upload, UploadFile)
        digest = hashlib.sha256()
        for piece in upload:
            digest.update(piece)
        return {"size": upload.size, "sha256": digest.hexdigest(), "rolled": upload.file._rolled}  # type: ignore[attr-defined]

    return app


@pytest.fixture
def client() -> TestClient:
    UPLOADS.clear()
    return TestClient(make_app(), max_body_size=64 * 1024)


def post(client: TestClient, body: bytes, ctype: str, path: str = "/form") -> TestResponse:
    return client.post(path, data=body, headers={"content-type": ctype})


# -- what a browser sends ---------------------------------------------------------------------


def test_fields_and_files(client: TestClient) -> None:
    body, ctype = encode(
        data={"title": "héllo", "tags": ["a", "b"]},
        files=[
            ("doc", ("notes.txt", b"line 1\nline 2\n", "text/plain")),
            ("doc", ("raw.bin", b"\x00\xff" * 10, "application/octet-stream")),
        ],
    )
    response = post(client, body, ctype)
    assert response.status == 200, response.text
    assert response.json() == [
        ["title", "héllo"],
        ["tags", "a"],
        ["tags", "b"],
        ["doc", {"filename": "notes.txt", "type": "text/plain", "size": 14, "content": "line 1\nline 2\n"}],
        [
            "doc",
            {
                "filename": "raw.bin",
                "type": "application/octet-stream",
                "size": 20,
                "content": ("\x00\xff" * 10),
            },
        ],
    ]
    # The request is over: every upload was closed, so its temporary file is gone.
    assert len(UPLOADS) == 2 and all(upload.closed for upload in UPLOADS)


def test_empty_file_input_and_missing_type(client: TestClient) -> None:
    boundary = "XyZ"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="pick"; filename=""\r\n\r\n'
        f"\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="latin"\r\nContent-Type: text/plain; charset=latin-1\r\n\r\n'
        "caf\xe9"
        f"\r\n--{boundary}--\r\n"
    ).encode("latin-1")
    response = post(client, body, f"multipart/form-data; boundary={boundary}")
    assert response.json() == [
        ["pick", {"filename": "", "type": "application/octet-stream", "size": 0, "content": ""}],
        ["latin", "café"],
    ]


def test_form_data_api() -> None:
    app = H3()

    @app.post("/")
    def handler(event: H3Event) -> object:
        form = event.read_form()
        assert event.read_form() is form  # cached
        upload = form["f"]
        assert isinstance(upload, UploadFile)
        assert repr(upload) == "<UploadFile f='a.txt' text/plain 5 bytes>"
        assert upload.read(2) == b"he" and upload.read() == b"llo"
        assert upload.seek(0) == 0 and list(upload) == [b"hello"]
        target = io.BytesIO()
        assert upload.save(target) == 5 and target.getvalue() == b"hello"
        assert upload.headers[0][0] == "Content-Disposition"
        return {
            "keys": form.keys(),
            "len": len(form),
            "iter": list(form),
            "in": ["x" in form, "nope" in form],
            "get": [form.get("x"), form.get("nope"), form.get("nope", "d")],
            "dict": sorted(form.to_dict()),
            "files": [name for name, _ in form.files()],
            "getall": [v if isinstance(v, str) else v.filename for v in form.getall("x") + form.getall("f")],
            "repr": repr(form)[:10],
        }

    body, ctype = encode(data={"x": "1"}, files={"f": ("a.txt", b"hello", "text/plain")})
    response = TestClient(app).post("/", data=body, headers={"content-type": ctype})
    assert response.json() == {
        "keys": ["x", "f"],
        "len": 2,
        "iter": ["x", "f"],
        "in": [True, False],
        "get": ["1", None, "d"],
        "dict": ["f", "x"],
        "files": ["f"],
        "getall": ["1", "a.txt"],
        "repr": "FormData([",
    }
    with pytest.raises(KeyError):
        FormData()["missing"]


def test_save_to_a_path_and_spooling_to_disk(tmp_path: Path) -> None:
    app = H3()
    content = os.urandom(50_000)

    @app.post("/")
    def handler(event: H3Event) -> object:
        upload = event.read_form(spool_size=1024)["f"]
        assert isinstance(upload, UploadFile)
        upload.save(tmp_path / "saved.bin")
        return {"rolled": upload.file._rolled}  # type: ignore[attr-defined]

    body, ctype = encode(files={"f": ("a.bin", content)})
    response = TestClient(app).post("/", data=body, headers={"content-type": ctype})
    assert response.json() == {"rolled": True}
    assert (tmp_path / "saved.bin").read_bytes() == content


def test_upload_file_made_by_hand() -> None:
    upload = UploadFile(io.BytesIO(b"abc"), name="n", filename="f.txt")
    assert upload.size == 3 and upload.read() == b"abc" and upload.content_type == "application/octet-stream"
    upload.close()
    assert upload.closed


def test_urlencoded_forms_still_work(client: TestClient) -> None:
    response = client.post("/form", data={"a": "1", "b": ["2", "3"]})
    assert response.json() == [["a", "1"], ["b", "2"], ["b", "3"]]


# -- limits --------------------------------------------------------------------------------------


def test_too_many_parts_is_413(client: TestClient) -> None:
    body, ctype = encode(data={f"f{i}": "x" for i in range(5)})
    response = post(client, body, ctype, "/form?max_parts=3")
    assert response.status == 413
    assert "Maximum segment count exceeded" in response.json()["message"]
    assert post(client, body, ctype, "/form?max_parts=5").status == 200


def test_field_too_large_is_413(client: TestClient) -> None:
    body, ctype = encode(data={"note": "x" * 100})
    response = post(client, body, ctype, "/form?max_field_size=50")
    assert (response.status, response.json()["message"]) == (413, "form field 'note' exceeds 50 bytes")


def test_file_too_large_is_413_and_leaves_nothing(client: TestClient) -> None:
    body, ctype = encode(files={"f": ("a.bin", b"x" * 1000)})
    response = post(client, body, ctype, "/form?max_file_size=999")
    assert (response.status, response.json()["message"]) == (413, "uploaded file 'f' exceeds 999 bytes")
    assert post(client, body, ctype, "/form?max_file_size=1000").status == 200


def test_whole_body_is_bounded_by_max_body_size(client: TestClient) -> None:
    body, ctype = encode(files={"f": ("a.bin", b"x" * 70_000)})
    response = post(client, body, ctype)
    assert response.status == 413
    assert response.json()["message"] == f"request body exceeds {64 * 1024} bytes"


def test_a_route_can_raise_the_body_limit(client: TestClient) -> None:
    body, ctype = encode(files={"file": ("a.bin", b"x" * 70_000)})
    response = post(client, body, ctype, "/big")
    assert response.status == 200 and response.json()["size"] == 70_000


def test_bad_limits_are_refused() -> None:
    event = H3Event(
        "POST", "/", __import__("h3green").Headers({"content-type": "multipart/form-data; boundary=x"})
    )
    for limits, match in [
        ({"max_size": -1}, "max_size"),
        ({"max_parts": -1}, "max_parts"),
        ({"max_file_size": -1}, "max_file_size"),
        ({"spool_size": -1}, "spool_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            event.read_form(**limits)


# -- malformed bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b"--x\r\n", "multipart/form-data", "multipart/form-data body without a boundary parameter"),
        (
            b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nunfinished',
            "multipart/form-data; boundary=x",
            "malformed multipart body: Unexpected end of multipart stream",
        ),
        (
            b"--x\r\nContent-Type: text/plain\r\n\r\nv\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
            "malformed multipart body: Missing Content-Disposition",
        ),
        (
            b"--x\r\nno colon here\r\n\r\nv\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
            "malformed multipart body: Malformed segment header",
        ),
        (b"", "multipart/form-data; boundary=x", "malformed multipart body"),
        (
            b'--x\r\nContent-Disposition: form-data; name="a"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
            b"\xff\xfe\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
            "form field 'a' is not valid utf-8 text",
        ),
        (
            b'--x\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n' + b"y" * 100,
            "multipart/form-data; boundary=x",
            "malformed multipart body: Unexpected end",
        ),
    ],
)
def test_malformed_bodies_are_400(client: TestClient, body: bytes, ctype: str, message: str) -> None:
    response = post(client, body, ctype)
    assert response.status == 400
    assert response.json()["message"].startswith(message)


def test_without_the_multipart_package(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "multipart", None)  # import fails
    body, ctype = encode(data={"a": "1"})
    with caplog.at_level(logging.ERROR, logger="h3green"):
        response = post(client, body, ctype)
    assert response.status == 500
    assert response.json()["message"] == "multipart/form-data bodies are not supported by this server"
    assert "pip install 'h3green[multipart]'" in caplog.text


def test_through_the_wsgi_adapter() -> None:
    body, ctype = encode(data={"a": "1"}, files={"f": ("a.txt", b"wsgi", "text/plain")})
    result = call(make_app(), make_environ("POST", "/form", body=body, headers={"content-type": ctype}))
    assert result.status == "200 OK"
    assert b'"content":"wsgi"' in result.body


# -- over real sockets ---------------------------------------------------------------------------


def open_fds_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def send_head(sock: Any, conn: h11.Connection, path: str, ctype: str, length: int) -> None:
    headers = [("host", "localhost"), ("content-type", ctype), ("content-length", str(length))]
    sock.sendall(conn.send(h11.Request(method="POST", target=path, headers=headers)))


@pytest.mark.live
def test_client_gone_mid_upload_leaves_no_temporary_file(serve_app: ServeApp, spool_dir: Path) -> None:
    errors: list[BaseException] = []
    app = make_app()
    app.on_error.append(lambda exc, event: errors.append(exc))
    server = serve_app(app)
    head, ctype = encode(files={"file": ("big.bin", b"")})
    prefix = head[: head.index(b"\r\n\r\n") + 4]
    sock = gsocket.create_connection(server.address)
    conn = h11.Connection(h11.CLIENT)
    try:
        send_head(sock, conn, "/big", ctype, 10 * 1024 * 1024)
        sock.sendall(prefix + b"z" * (3 * 1024 * 1024))  # past the spool size: on disk now
        wait_until(lambda: open_fds_under(spool_dir), what="the upload to reach a temporary file")
    finally:
        sock.close()
    wait_until(lambda: errors, what="the server to notice the client left")
    assert isinstance(errors[0], HTTPError) and errors[0].status == 400
    assert open_fds_under(spool_dir) == []
    assert os.listdir(spool_dir) == []


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def upload_pieces(block: bytes, count: int, prefix: bytes, suffix: bytes) -> Iterator[bytes]:
    yield prefix
    for _ in range(count):
        yield block
    yield suffix


@pytest.mark.live
def test_100_mib_upload_streams_with_flat_memory(serve_app: ServeApp, spool_dir: Path) -> None:
    server = serve_app(make_app())
    block = os.urandom(1024 * 1024)
    count = 100
    template, ctype = encode(files={"file": ("big.bin", b"@@", "application/octet-stream")})
    prefix, suffix = template.split(b"@@")
    length = len(prefix) + len(block) * count + len(suffix)
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)
    sock = gsocket.create_connection(server.address)
    conn = h11.Connection(h11.CLIENT)
    before = rss_kib()
    peak = before
    try:
        send_head(sock, conn, "/big", ctype, length)
        for piece in upload_pieces(block, count, prefix, suffix):
            sock.sendall(conn.send(h11.Data(data=piece)))
            peak = max(peak, rss_kib())
        sock.sendall(conn.send(h11.EndOfMessage()))
        body = b""
        with gevent.Timeout(60):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif type(event) is h11.Data:
                    body += event.data
                elif type(event) is h11.EndOfMessage:
                    break
        peak = max(peak, rss_kib())
    finally:
        sock.close()
    import json

    result = json.loads(body)
    assert result == {"size": len(block) * count, "sha256": expected.hexdigest(), "rolled": True}
    growth = peak - before
    print(f"100 MiB upload: RSS {before} KiB -> peak {peak} KiB (+{growth} KiB)")
    assert growth < 16 * 1024, f"RSS grew by {growth} KiB during a 100 MiB upload"
    wait_until(lambda: not open_fds_under(spool_dir), what="the upload's temporary file to close")
