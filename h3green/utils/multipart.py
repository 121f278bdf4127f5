"""Form bodies: ``multipart/form-data`` uploads, streamed, and the ``FormData`` both kinds
of form body give (``event.read_form()``).

Strategy: the body flows from ``event.iter_body()`` (which enforces ``max_body_size``, the
limit on the whole upload) into ``multipart.PushMultipartParser`` (the ``multipart``
package, extra ``h3green[multipart]``), a push parser: we hand it each piece as it
arrives and it hands back part heads, payload pieces and part ends, holding no more than
a boundary's length itself. Text fields collect in memory up to ``max_field_size``;
files go to a ``SpooledTemporaryFile`` that stays in memory up to ``spool_size`` and then
moves to an anonymous temporary file (on Linux it has no name in the directory at all,
so nothing can be left behind even by a crash). Every upload is closed, so its file
removed, when the request's handling ends (``H3.handle`` closes the form) or at once
when parsing fails, a client that stops mid-upload included.

Errors: a malformed body is 400 with the parser's reason; a part, field or file past its
limit is 413. Without the ``multipart`` package a multipart body is answered with 500
(the server lacks a feature, the client did nothing wrong) and one error line in the
log saying which extra to install.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final, overload

from ..errors import HTTPError

if TYPE_CHECKING:
    from ..event import H3Event

__all__ = ["FormData", "UploadFile", "parse_multipart"]

logger = logging.getLogger("h3green")

#: Parts (fields and files) in one body: Werkzeug's ``max_form_parts`` (1,000).
DEFAULT_MAX_PARTS: Final = 1000
#: Bytes of one text field, held in memory: 1 MiB.
DEFAULT_MAX_FIELD_SIZE: Final = 1024 * 1024
#: Bytes of a file kept in memory before it moves to disk: 1 MiB, as Starlette.
DEFAULT_SPOOL_SIZE: Final = 1024 * 1024
_CHUNK: Final = 64 * 1024

_INSTALL_HINT: Final = (
    "a multipart/form-data request was refused because the 'multipart' package is not "
    "installed: pip install 'h3green[multipart]'"
)


class UploadFile:
    """One uploaded file: ``filename`` and ``content_type`` as the client sent them
    (never use ``filename`` as a path), ``size`` in bytes, ``headers`` of its part.

    ``read()``, iteration (pieces of 64 KiB, from the start) and ``save(path)`` give the
    content; it lives until the request's handling ends.
    """

    __slots__ = ("_file", "content_type", "filename", "headers", "name", "size")

    def __init__(
        self,
        file: IO[bytes],
        *,
        name: str = "",
        filename: str = "",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        size: int | None = None,
    ) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type or "application/octet-stream"
        self.headers = list(headers)
        self._file = file
        if size is None:
            size = file.seek(0, os.SEEK_END)
            file.seek(0)
        self.size = size

    def __repr__(self) -> str:
        return f"<UploadFile {self.name}={self.filename!r} {self.content_type} {self.size} bytes>"

    @property
    def file(self) -> IO[bytes]:
        """The underlying binary file (positioned wherever the last read left it)."""
        return self._file

    @property
    def closed(self) -> bool:
        return self._file.closed

    def read(self, size: int = -1) -> bytes:
        """Up to *size* bytes from the current position (all that is left by default)."""
        return self._file.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def __iter__(self) -> Iterator[bytes]:
        self._file.seek(0)
        while data := self._file.read(_CHUNK):
            yield data

    def save(self, destination: str | os.PathLike[str] | IO[bytes]) -> int:
        """Copy the whole content to a path or a writable binary file; the bytes copied."""
        self._file.seek(0)
        if isinstance(destination, str | os.PathLike):
            with open(destination, "wb") as out:
                shutil.copyfileobj(self._file, out, _CHUNK)
        else:
            shutil.copyfileobj(self._file, destination, _CHUNK)
        return self.size

    def close(self) -> None:
        """Release the content (its temporary file, if it had moved to disk)."""
        self._file.close()


FormValue = str | UploadFile


class FormData:
    """The fields of a form body in order: text fields as ``str``, files as
    ``UploadFile``. ``form["name"]``/``get`` give the first value, ``getall`` every one."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, FormValue]] = ()) -> None:
        self._items: list[tuple[str, FormValue]] = list(items)

    def append(self, name: str, value: FormValue) -> None:
        self._items.append((name, value))

    @overload
    def get(self, name: str) -> FormValue | None: ...
    @overload
    def get(self, name: str, default: FormValue) -> FormValue: ...
    def get(self, name: str, default: FormValue | None = None) -> FormValue | None:
        for key, value in self._items:
            if key == name:
                return value
        return default

    def getall(self, name: str) -> list[FormValue]:
        return [value for key, value in self._items if key == name]

    def items(self) -> list[tuple[str, FormValue]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return list(dict.fromkeys(key for key, _ in self._items))

    def to_dict(self) -> dict[str, FormValue]:
        """``{name: first value}``."""
        out: dict[str, FormValue] = {}
        for key, value in self._items:
            out.setdefault(key, value)
        return out

    def files(self) -> list[tuple[str, UploadFile]]:
        """Every ``(name, upload)``, in order."""
        return [(key, value) for key, value in self._items if isinstance(value, UploadFile)]

    def __getitem__(self, name: str) -> FormValue:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __repr__(self) -> str:
        return f"FormData({self._items!r})"

    def close(self) -> None:
        """Close every upload (done for you when the request's handling ends)."""
        for _, value in self._items:
            if isinstance(value, UploadFile):
                value.close()


def _import_parser() -> Any:
    try:
        import multipart
    except ImportError:
        logger.error(_INSTALL_HINT)
        raise HTTPError(500, "multipart/form-data bodies are not supported by this server") from None
    return multipart


class _Part:
    """The part being received: a growing text field or a spooling file."""

    __slots__ = ("field", "file", "segment", "size")

    def __init__(self, segment: Any, spool_size: int) -> None:
        self.segment = segment
        self.size = 0
        self.field: bytearray | None = None
        self.file: IO[bytes] | None = None
        if segment.filename is None:
            self.field = bytearray()
        else:
            self.file = tempfile.SpooledTemporaryFile(max_size=spool_size)  # noqa: SIM115


def parse_multipart(  # noqa: PLR0912 - a branch per part kind and per limit
    event: H3Event,
    *,
    max_parts: int = DEFAULT_MAX_PARTS,
    max_field_size: int = DEFAULT_MAX_FIELD_SIZE,
    max_file_size: int | None = None,
    spool_size: int = DEFAULT_SPOOL_SIZE,
) -> FormData:
    """Parse the ``multipart/form-data`` body of *event* as it streams in.

    The whole body is bounded by ``event.max_body_size``; ``max_file_size`` bounds each
    file (None: only the whole body does).
    """
    for name, value in (
        ("max_parts", max_parts),
        ("max_field_size", max_field_size),
        ("spool_size", spool_size),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if max_file_size is not None and max_file_size < 0:
        raise ValueError(f"max_file_size must be >= 0, got {max_file_size}")
    multipart = _import_parser()
    _, params = multipart.parse_options_header(event.headers.get("content-type", ""))
    boundary = params.get("boundary")
    if not boundary:
        raise HTTPError(400, "multipart/form-data body without a boundary parameter")
    form = FormData()
    part: _Part | None = None
    complete = False
    try:
        parser = multipart.PushMultipartParser(boundary, max_segment_count=max_parts)
        for chunk in _with_end(event.iter_body()):
            for item in parser.parse(chunk):
                if item is None:  # the end of a part
                    assert part is not None
                    form.append(part.segment.name, _finish(part))
                    part = None
                elif isinstance(item, bytes | bytearray):
                    assert part is not None
                    _receive(part, item, max_field_size, max_file_size)
                else:  # the head of the next part
                    part = _Part(item, spool_size)
        complete = True
    except multipart.ParserLimitReached as exc:
        raise HTTPError(413, f"multipart body refused: {exc}") from None
    except multipart.MultipartError as exc:
        raise HTTPError(400, f"malformed multipart body: {exc}") from None
    finally:
        if not complete:
            # Whatever stopped us (a bad body, a limit, a client gone mid-upload), no
            # temporary file outlives this call.
            if part is not None and part.file is not None:
                part.file.close()
            form.close()
    return form


def _with_end(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The body's pieces, then ``b""``: the push parser's signal that the input ended."""
    yield from pieces
    yield b""


def _receive(part: _Part, data: bytes | bytearray, max_field_size: int, max_file_size: int | None) -> None:
    part.size += len(data)
    name = part.segment.name
    if part.field is not None:
        if part.size > max_field_size:
            raise HTTPError(413, f"form field {name!r} exceeds {max_field_size} bytes")
        part.field += data
        return
    if max_file_size is not None and part.size > max_file_size:
        raise HTTPError(413, f"uploaded file {name!r} exceeds {max_file_size} bytes")
    assert part.file is not None
    part.file.write(data)


def _finish(part: _Part) -> FormValue:
    segment = part.segment
    if part.field is not None:
        charset = segment.charset or "utf-8"
        try:
            return part.field.decode(charset)
        except (UnicodeDecodeError, LookupError):
            raise HTTPError(400, f"form field {segment.name!r} is not valid {charset} text") from None
    file = part.file
    assert file is not None
    file.seek(0)
    part.file = None  # the form owns it now
    return UploadFile(
        file,
        name=segment.name,
        filename=segment.filename,
        content_type=segment.content_type,
        headers=segment.headerlist,
        size=part.size,
    )
