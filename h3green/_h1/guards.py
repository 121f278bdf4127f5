"""Byte-level checks both drivers run before their parser sees the bytes.

Strategy: h11 and llhttp disagree at a few places the grammar of RFC 9112 settles, and a
request that one parser frames differently from the other (or from a front proxy) is how
requests are smuggled. Where the two differ, h3green decides here, once, so the answer
does not depend on ``Config.http_parser``:

* **Empty lines before a request line** (RFC 9112 §2.2: "a server that is expecting to
  receive and parse a request-line SHOULD ignore at least one empty line (CRLF) received
  prior to the request-line"): ``EmptyLines`` drops up to ``MAX_EMPTY_LINES`` of them
  (a bare LF counts as one, as §2.2 lets a recipient read it),
  however the bytes are split across reads (a CR may end one read and its LF begin the
  next). More than that is a 400: a client that sends nothing but line ends is not
  sending a request. h11 refuses even one; llhttp skips any number.
* **Chunk-size lines** (RFC 9112 §7.1)::

      chunk-size = 1*HEXDIG
      chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
      chunk-line = chunk-size [ chunk-ext ] CRLF

  ``ChunkLines`` follows a chunked body's framing (size line, that many bytes of data,
  CRLF, and so on up to the last chunk) and checks every size line against that grammar:
  h11 takes anything after a ``;`` (a CR inside an extension, an empty name) and a space
  after the size with no extension; llhttp refuses the whitespace (BWS) the grammar
  allows around ``;`` and ``=``. The parser then gets each size line as the size alone
  and a CRLF, the one form both read the same way (both drop extensions anyway). The
  trailer section after the last chunk goes to the parser as sent.

Both keep at most a line's worth of bytes (bounded by the head limits) between reads.
"""

from __future__ import annotations

import re
from typing import Final

from .events import ProtocolError

__all__ = ["MAX_EMPTY_LINES", "ChunkLines", "EmptyLines"]

#: Empty lines skipped before a request line (RFC 9112 §2.2 asks for "at least one").
MAX_EMPTY_LINES: Final = 8

_TCHAR: Final = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
# RFC 9110 §5.6.4: qdtext and quoted-pair, obs-text included.
_QUOTED: Final = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_EXT: Final = rb"[ \t]*;[ \t]*%s+(?:[ \t]*=[ \t]*(?:%s+|%s))?" % (_TCHAR, _TCHAR, _QUOTED)
# 16 hex digits: a 64-bit size, llhttp's own ceiling.
CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:%s)*\r\n" % _EXT)

_SIZE: Final = 0  # reading a chunk-size line
_DATA: Final = 1  # passing a chunk's data through
_CRLF: Final = 2  # expecting the CRLF after a chunk's data
_DONE: Final = 3  # the last chunk's line went by; the trailer section is the parser's


class EmptyLines:
    """Drops empty lines before a request line (see the module docstring)."""

    __slots__ = ("_count", "_cr")

    def __init__(self) -> None:
        self._count = 0
        self._cr = False  # the last read ended with the CR of a CRLF

    def reset(self) -> None:
        """A request line began: the next request may again be preceded by empty lines."""
        self._count = 0
        self._cr = False

    @property
    def partial(self) -> bytes:
        """The CR held back from the last read, if any."""
        return b"\r" if self._cr else b""

    def strip(self, data: bytes) -> bytes:
        """*data* without the empty lines it starts with (``b""`` if that is all it is)."""
        i = 0
        if self._cr:
            if data[:1] != b"\n":
                raise ProtocolError(400, "malformed request line")
            self._cr = False
            self._count += 1
            i = 1
        while True:
            if data[i : i + 2] == b"\r\n":
                i += 2
            elif data[i : i + 1] == b"\n":  # §2.2: a recipient MAY take a bare LF as a line end
                i += 1
            else:
                break
            self._count += 1
        if data[i : i + 1] == b"\r":
            if i + 1 < len(data):
                raise ProtocolError(400, "malformed request line")
            self._cr = True
            i += 1
        if self._count > MAX_EMPTY_LINES:
            raise ProtocolError(400, "too many empty lines before the request line")
        return data[i:] if i else data


class ChunkLines:
    """Follows one chunked body's framing and checks its chunk-size lines."""

    __slots__ = ("_left", "_limit", "_line", "_state")

    def __init__(self, limit: int) -> None:
        self._limit = limit  # longest size line (the head limits, as the parsers use)
        self._state = _SIZE
        self._left = 0  # data bytes of the current chunk still to pass
        self._line = b""  # a size line (or CRLF) begun in an earlier read

    @property
    def done(self) -> bool:
        """The last chunk's size line went by: what follows is the parser's alone."""
        return self._state == _DONE

    @property
    def partial(self) -> bytes:
        """Bytes held back from the parser: a size line not complete yet."""
        return self._line

    def filter(self, data: bytes) -> tuple[bytes, bytes]:
        """Check *data*: (the bytes for the parser, the bytes after the last chunk's line).

        Raises ``ProtocolError`` (400) at the first line that breaks the grammar.
        """
        out: list[bytes] = []
        i = 0
        end = len(data)
        while i < end:
            state = self._state
            if state == _DATA:
                take = min(self._left, end - i)
                out.append(data[i : i + take])
                i += take
                self._left -= take
                if not self._left:
                    self._state = _CRLF
            elif state == _CRLF:
                line = self._line + data[i : i + 2 - len(self._line)]
                i += len(line) - len(self._line)
                if line != b"\r\n"[: len(line)]:
                    raise ProtocolError(400, "malformed chunk: missing CRLF after the data")
                if len(line) < 2:
                    self._line = line
                    break
                self._line = b""
                out.append(line)
                self._state = _SIZE
            else:  # _SIZE (once _DONE, the driver stops filtering)
                lf = data.find(b"\n", i)
                if lf == -1:
                    self._line += data[i:]
                    if len(self._line) > self._limit:
                        raise ProtocolError(400, "chunk size line or trailer section too long")
                    break
                line = self._line + data[i : lf + 1]
                self._line = b""
                i = lf + 1
                match = CHUNK_LINE.fullmatch(line)
                if match is None:
                    if len(line) > self._limit:
                        raise ProtocolError(400, "chunk size line or trailer section too long")
                    raise ProtocolError(400, "malformed chunk size")
                size = match.group(1)
                out.append(size + b"\r\n")
                self._left = int(size, 16)
                if not self._left:
                    self._state = _DONE
                    return b"".join(out), data[i:]
                self._state = _DATA
        return b"".join(out), b""
