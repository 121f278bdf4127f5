"""SSE wire encoding against the WHATWG HTML rules (9.2.6, "Interpreting an event stream")."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h3green.sse import SSEEvent, encode_comment, encode_event
from h3green.testing import parse_sse_lines


def spec_parse(stream: bytes) -> list[dict[str, str | None]]:
    """A deliberately literal reading of the WHATWG algorithm, independent of h3green's.

    Decodes UTF-8, strips one leading BOM, splits lines on CRLF, LF or CR, and dispatches
    on blank lines with the data buffer's final LF removed.
    """
    text = stream.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    # Anything after the last line break is an incomplete line: the spec ignores it.
    lines.pop()
    events: list[dict[str, str | None]] = []
    data = ""
    event_type = ""
    last_id: str | None = None
    for line in lines:
        if line == "":
            if data == "":
                event_type = ""
                continue
            if data.endswith("\n"):
                data = data[:-1]
            events.append({"data": data, "event": event_type or "message", "id": last_id})
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "data":
            data += value + "\n"
        elif field == "event":
            event_type = value
        elif field == "id" and "\x00" not in value:
            last_id = value
    return events


def one(payload: bytes) -> dict[str, str | None]:
    events = spec_parse(payload)
    assert len(events) == 1
    return events[0]


def test_simple_event_bytes() -> None:
    assert encode_event("hello") == b"data: hello\n\n"
    assert encode_event("1", event="counter", id="1") == b"event: counter\nid: 1\ndata: 1\n\n"
    assert encode_event("x", retry=3000) == b"retry: 3000\ndata: x\n\n"


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("a\nb", [b"data: a", b"data: b"]),
        ("a\rb", [b"data: a", b"data: b"]),
        ("a\r\nb", [b"data: a", b"data: b"]),
        ("a\n\nb", [b"data: a", b"data: ", b"data: b"]),
        ("a\n", [b"data: a", b"data: "]),
        ("\r\n", [b"data: ", b"data: "]),
    ],
)
def test_line_breaks_become_data_lines(data: str, lines: list[bytes]) -> None:
    assert encode_event(data) == b"\n".join(lines) + b"\n\n"
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    assert one(encode_event(data))["data"] == expected


def test_leading_space_survives() -> None:
    # The parser strips exactly one space after the colon: the one we always write.
    payload = encode_event("  two spaces", event=" spaced")
    assert payload == b"event:  spaced\ndata:   two spaces\n\n"
    assert one(payload) == {"data": "  two spaces", "event": " spaced", "id": None}


def test_empty_data_is_still_an_event() -> None:
    assert encode_event("") == b"data: \n\n"
    assert one(encode_event(""))["data"] == ""


def test_non_ascii_is_utf8_without_bom() -> None:
    payload = encode_event("héllo ☃ 𝄞", event="naïve")
    assert payload == "event: naïve\ndata: héllo ☃ 𝄞\n\n".encode()
    assert not payload.startswith(b"\xef\xbb\xbf")
    assert one(payload) == {"data": "héllo ☃ 𝄞", "event": "naïve", "id": None}


def test_leading_bom_in_data_is_not_the_stream_bom() -> None:
    assert one(encode_event("\ufeffx"))["data"] == "\ufeffx"


def test_bytes_and_json_data() -> None:
    assert encode_event(b"raw \xc3\xa9") == "data: raw é\n\n".encode()
    assert encode_event({"a": [1, "x\ny"]}) == b'data: {"a":[1,"x\\ny"]}\n\n'
    assert encode_event([1, 2]) == b"data: [1,2]\n\n"


def test_empty_id_resets_last_event_id() -> None:
    stream = encode_event("a", id="7") + encode_event("b") + encode_event("c", id="")
    assert [e["id"] for e in spec_parse(stream)] == ["7", "7", ""]
    events = list(parse_sse_lines(iter(stream.decode().split("\n"))))
    assert [e.id for e in events] == ["7", "7", ""]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "a\nb"},
        {"event": "a\rb"},
        {"id": "1\n2"},
        {"id": "1\r"},
        {"id": "a\x00b"},
        {"retry": -1},
        {"retry": 1.5},
        {"retry": "100"},
        {"retry": True},
    ],
)
def test_rejected_fields_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="SSE"):
        encode_event("data", **kwargs)  # type: ignore[arg-type]


def test_rejected_data() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        encode_event(b"\xff")
    with pytest.raises(ValueError, match="JSON-serialisable"):
        encode_event(object())


def test_comment() -> None:
    assert encode_comment() == b": \n"
    assert encode_comment("a\nb") == b": a\n: b\n"
    assert spec_parse(encode_comment("x\r\ny") + encode_event("z")) == [
        {"data": "z", "event": "message", "id": None}
    ]


def test_sse_event_object() -> None:
    item = SSEEvent({"k": 1}, event="e", id="3", retry=5)
    assert item.encode() == encode_event({"k": 1}, event="e", id="3", retry=5)
    assert "SSEEvent(" in repr(item)


safe_field = st.text(st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"]))


@given(data=st.text(), event=safe_field, id=safe_field)
def test_any_data_round_trips(data: str, event: str, id: str) -> None:
    """Whatever the data, a spec-following parser recovers it (line breaks normalised to LF)."""
    stream = encode_event(data, event=event, id=id) + encode_event("next")
    first, second = spec_parse(stream)
    assert first["data"] == data.replace("\r\n", "\n").replace("\r", "\n")
    assert first["event"] == (event or "message")
    assert first["id"] == id
    assert second == {"data": "next", "event": "message", "id": id}
    # h3green's own parser (what TestClient uses) agrees.
    lines = iter(re.split(r"\r\n|\r|\n", stream.decode()))
    parsed = list(parse_sse_lines(lines))
    assert parsed[0].data == first["data"]
    assert parsed[0].event == first["event"]
