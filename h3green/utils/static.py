"""Static files: ``app.mount("/assets", StaticFiles("public"))`` or ``serve_static(...)``.

Strategy: a request path becomes a file only through ``_resolve``, which refuses, before
touching the disk, every segment that could climb or smuggle a separator (``..``, ``.``,
backslashes, NUL, segments that decode a second time into any of those) and hidden
names; then ``os.path.realpath`` of the result must still lie inside the real directory,
which also catches symlinks that lead out. Every refusal is a plain 404, so a probe
learns nothing about what exists.

The file is opened once and described by ``fstat`` of that descriptor (no race between
a stat and the open); its body is read in ``chunk_size`` pieces as the socket takes them
and sent with a ``Content-Length`` (the body object carries ``content_length``, which
the server and the WSGI adapter honour), so memory stays flat whatever the file size.

HTTP semantics (RFC 9110): ``GET``/``HEAD`` only (405 with ``Allow``); validators first
(``If-None-Match`` then ``If-Modified-Since``, see ``cache``), then ``Range``. One range
gives 206 with ``Content-Range``; an unsatisfiable one 416 with ``Content-Range: bytes
*/size``; several ranges are answered with the whole file (200), which §14.2 allows ("A
server MAY ignore the Range header field") and spares us ``multipart/byteranges``.
``If-Range`` uses the strong comparison, or an exact date (§13.1.5).
"""

from __future__ import annotations

import functools
import mimetypes
import os
import stat
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from ..errors import HTTPError
from ..response import Response
from .cache import etag_matches, http_date, is_not_modified, parse_http_date

if TYPE_CHECKING:
    from ..event import H3Event

__all__ = ["FileBody", "StaticFiles", "serve_static"]

#: Bytes read from disk per piece sent: 64 KiB, as nginx's default ``output_buffers``.
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
_ALLOW: Final = {"allow": "GET, HEAD"}
# Content-Encoding token, file suffix; the order breaks ties between equal q-values.
_ENCODINGS: Final = (("br", ".br"), ("gzip", ".gz"))
# What mimetypes calls the compression of a file that is itself an archive.
_ARCHIVE_TYPES: Final = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


class FileBody:
    """A response body read from an open file in bounded pieces; ``close()`` closes it.

    ``content_length`` tells the server the exact length to declare; a file that
    shrinks while being sent raises, so the connection is cut rather than the client
    told a wrong length.
    """

    __slots__ = ("_file", "_remaining", "chunk_size", "content_length")

    def __init__(
        self, file: IO[bytes], offset: int, length: int, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        if offset:
            file.seek(offset)
        self._file = file
        self._remaining = length
        self.content_length = length
        self.chunk_size = chunk_size

    def __iter__(self) -> FileBody:
        return self

    def __next__(self) -> bytes:
        remaining = self._remaining
        if remaining <= 0:
            raise StopIteration
        data = self._file.read(min(self.chunk_size, remaining))
        if not data:
            raise OSError("the file shrank while it was being sent")
        self._remaining = remaining - len(data)
        return data

    def close(self) -> None:
        self._file.close()


def _segments(path: str, dotfiles: bool) -> list[str] | None:
    """The path's segments, or None when any of them is unsafe to join to a directory."""
    if "\x00" in path or "\\" in path:
        return None
    segments = [segment for segment in path.split("/") if segment]
    for segment in segments:
        if segment in (".", ".."):
            return None
        if "%" in segment:
            # Already decoded once by the router: a second decoding must not reveal a
            # separator or a dot segment ("%252e%252e" is "%2e%2e" here).
            twice = unquote(segment)
            if twice in (".", "..") or any(c in twice for c in "/\\\x00"):
                return None
        if segment[0] == "." and not dotfiles:
            return None
    return segments


def _inside(root: str, real: str) -> bool:
    return real == root or real.startswith(root if root.endswith(os.sep) else root + os.sep)


def _media_type(name: str) -> str:
    media_type, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:  # "x.tar.gz" is a gzip file to the client, not a tar stream
        return _ARCHIVE_TYPES.get(encoding, "application/octet-stream")
    if media_type is None:
        return "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/javascript", "image/svg+xml"):
        return media_type + "; charset=utf-8"
    return media_type


def _accepted_encodings(header: str | None) -> list[str]:
    """Content codings we have siblings for, best first by q-value (``q=0`` means never)."""
    if not header:
        return []
    weights: dict[str, float] = {}
    for item in header.split(","):
        token, *params = item.strip().split(";")
        q = 1.0
        for param in params:
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[token.strip().lower()] = q
    star = weights.get("*", 0.0)
    ranked = [(weights.get(name, star), -index, name) for index, (name, _) in enumerate(_ENCODINGS)]
    return [name for q, _, name in sorted(ranked, reverse=True) if q > 0]


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as inclusive (first, last); None to ignore the header.

    Raises ``HTTPError(416)`` for a well-formed range that lies wholly past the end.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if (
        not dash
        or not (first_text.isdigit() or first_text == "")
        or not (last_text.isdigit() or last_text == "")
    ):
        return None
    unsatisfiable = HTTPError(
        416, "the requested range is not satisfiable", headers={"content-range": f"bytes */{size}"}
    )
    if not first_text:  # suffix range: the last N bytes
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # RFC 9110 §14.1.1: invalid, so the whole header is ignored
    if first >= size:
        raise unsatisfiable
    return first, (min(int(last_text), size - 1) if last_text else size - 1)


def _if_range_holds(event: H3Event, etag: str, mtime: int) -> bool:
    value = event.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value[:1] == '"' or value[:2] == "W/":
        return etag_matches(value, etag, weak=False)
    return parse_http_date(value) == mtime


class StaticFiles:
    """Serve the files under *directory*; mount it (``app.mount("/assets", StaticFiles(
    "public"))``) or use it as middleware (``app.use(StaticFiles("public",
    fallthrough=True))``, files at the root, other requests go on to the routes).

    ``index``: the file served for a directory (None: directories are 404).
    ``max_age``: seconds for ``Cache-Control: public, max-age=N`` (None: no header).
    ``fallthrough``: a missing file (or a method other than GET/HEAD) is not an error;
    as middleware the request goes on to ``next()``, as a mount it is still a 404 since
    nothing comes after. ``precompressed``: serve ``name.br``/``name.gz`` when they
    exist and the client accepts them. ``dotfiles``: serve names starting with ``.``
    (off: ``.env``, ``.git`` are 404). ``chunk_size``: bytes read per piece sent.
    """

    __slots__ = ("chunk_size", "directory", "dotfiles", "fallthrough", "index", "max_age", "precompressed")

    def __init__(  # noqa: PLR0913 - documented keyword-only options
        self,
        directory: str | os.PathLike[str],
        *,
        index: str | None = "index.html",
        max_age: int | None = None,
        fallthrough: bool = False,
        precompressed: bool = True,
        dotfiles: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        real = os.path.realpath(directory)
        if not os.path.isdir(real):
            raise ValueError(f"StaticFiles directory {os.fspath(directory)!r} is not a directory")
        if index is not None and (not index or "/" in index or "\\" in index or index in (".", "..")):
            raise ValueError(f"index must be a plain file name, got {index!r}")
        if max_age is not None and max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.directory = real
        self.index = index
        self.max_age = max_age
        self.fallthrough = fallthrough
        self.precompressed = precompressed
        self.dotfiles = dotfiles
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"<StaticFiles {self.directory!r}>"

    # -- the two ways in -----------------------------------------------------------------

    def handle(self, event: H3Event) -> Response:
        """Answer *event* from the directory (what ``app.mount`` calls)."""
        response = self.serve(event, event.path)
        if response is None:
            raise HTTPError(404, f"Cannot find any file matching {event.path}")
        return response

    def __call__(self, event: H3Event, next: Callable[[], Response]) -> Response:
        """Middleware: serve a file if there is one, else (with ``fallthrough``) go on."""
        response = self.serve(event, event.path)
        return next() if response is None else response

    # -- serving -------------------------------------------------------------------------

    def serve(self, event: H3Event, path: str) -> Response | None:
        """The response for file *path*; None when it should fall through."""
        if event.method not in ("GET", "HEAD"):
            if self.fallthrough:
                return None
            raise HTTPError(405, f"Method {event.method} is not allowed", headers=_ALLOW)
        found = self._resolve(path)
        if found is None:
            if self.fallthrough:
                return None
            raise HTTPError(404, f"Cannot find any file matching {path}")
        real, is_dir_request = found
        if is_dir_request and not event.target.partition("?")[0].endswith("/"):
            # Relative links in an index page resolve against the URL: "/docs" must
            # become "/docs/". A relative Location ("./docs/") cannot send the client to
            # another host, whatever the path held.
            last = event.target.partition("?")[0].rsplit("/", 1)[-1]
            query = event.target.partition("?")[2]
            location = f"./{last}/" + (f"?{query}" if query else "")
            return Response(None, 301, {"location": location})
        return self._respond(event, real)

    def _resolve(self, path: str) -> tuple[str, bool] | None:  # noqa: PLR0911 - one return per way a path resolves (or not)
        """(real path of a regular file, whether a directory was asked for), or None."""
        segments = _segments(path, self.dotfiles)
        if segments is None:
            return None
        root = self.directory
        real = os.path.realpath(os.path.join(root, *segments))
        if not _inside(root, real):
            return None
        try:
            mode = os.stat(real).st_mode
        except (OSError, ValueError):
            return None
        is_dir = stat.S_ISDIR(mode)
        if is_dir:
            if self.index is None:
                return None
            real = os.path.realpath(os.path.join(real, self.index))
            if not _inside(root, real):
                return None
            try:
                mode = os.stat(real).st_mode
            except OSError:
                return None
        return (real, is_dir) if stat.S_ISREG(mode) else None

    def _variant(self, event: H3Event, real: str) -> tuple[IO[bytes], os.stat_result, str | None] | None:
        """The open file to send (maybe a compressed sibling), its stat, its coding."""
        if self.precompressed:
            for coding in _accepted_encodings(event.headers.get("accept-encoding")):
                suffix = dict(_ENCODINGS)[coding]
                sibling = os.path.realpath(real + suffix)
                if not _inside(self.directory, sibling):
                    continue
                opened = _open_regular(sibling)
                if opened is not None:
                    return opened[0], opened[1], coding
        opened = _open_regular(real)
        return None if opened is None else (opened[0], opened[1], None)

    def _respond(self, event: H3Event, real: str) -> Response:
        variant = self._variant(event, real)
        if variant is None:  # removed between the stat and the open
            raise HTTPError(404, "Cannot find the file")
        file, info, coding = variant
        try:
            return self._build(event, real, file, info, coding)
        except BaseException:
            file.close()
            raise

    def _build(
        self, event: H3Event, real: str, file: IO[bytes], info: os.stat_result, coding: str | None
    ) -> Response:
        size = info.st_size
        mtime = int(info.st_mtime)
        etag = f'"{info.st_mtime_ns:x}-{size:x}' + (f"-{coding}" if coding else "") + '"'
        headers: dict[str, str] = {"etag": etag, "last-modified": http_date(mtime)}
        if self.max_age is not None:
            headers["cache-control"] = f"public, max-age={self.max_age}"
        if self.precompressed:
            headers["vary"] = "Accept-Encoding"
        if is_not_modified(event, etag=etag, modified_time=mtime):
            file.close()
            return Response(None, 304, headers)
        headers["content-type"] = _media_type(real)
        headers["accept-ranges"] = "bytes"
        headers["x-content-type-options"] = "nosniff"
        if coding is not None:
            headers["content-encoding"] = coding
        status, offset, length = 200, 0, size
        range_header = event.headers.get("range")
        if range_header is not None and _if_range_holds(event, etag, mtime):
            byte_range = _parse_range(range_header, size)
            if byte_range is not None:
                first, last = byte_range
                status, offset, length = 206, first, last - first + 1
                headers["content-range"] = f"bytes {first}-{last}/{size}"
        response = Response(None, status, headers)
        response.body = FileBody(file, offset, length, self.chunk_size)
        return response


def _open_regular(path: str) -> tuple[IO[bytes], os.stat_result] | None:
    try:
        file = open(path, "rb")  # noqa: SIM115 - the response body closes it
    except OSError:
        return None
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode):
        file.close()
        return None
    return file, info


def serve_static(
    event: H3Event, directory: str | os.PathLike[str], path: str, **options: Any
) -> Response | None:
    """Serve file *path* from *directory* in a handler (options as ``StaticFiles``)::

        @app.get("/files/**:path")
        def files(event):
            return serve_static(event, "public", event.params["path"])

    Returns None only with ``fallthrough=True`` when there is no such file.
    """
    # abspath, not the bare name: a relative directory means the current one's, each call.
    return _static_files(os.path.abspath(directory), tuple(sorted(options.items()))).serve(event, path)


# PERF: checking the options and resolving the directory once per distinct call site,
# not on every request.
@functools.lru_cache(maxsize=64)
def _static_files(directory: str, options: tuple[tuple[str, Any], ...]) -> StaticFiles:
    return StaticFiles(directory, **dict(options))
