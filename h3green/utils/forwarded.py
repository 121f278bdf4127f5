"""The client's address and the URL it used, behind reverse proxies.

Two ways, as in H3 and gunicorn:

* per call, opt-in: ``get_request_ip(event, x_forwarded_for=True)`` and
  ``get_request_url(event, x_forwarded_host=True, x_forwarded_proto=True)`` believe the
  headers as sent (the first value, as H3 does). Use them only behind a proxy that
  overwrites those headers, since any client can send them.
* server-wide: ``Config.forwarded_allow_ips`` (``--forwarded-allow-ips``, gunicorn's
  setting of the same name under ``H3Worker``) lists the proxies to trust. Only when the
  connection comes from one of them are ``event.remote_addr``, ``event.scheme`` and the
  ``Host`` taken from RFC 7239 ``Forwarded`` (if present) or ``X-Forwarded-For``,
  ``-Proto`` and ``-Host``.

Strategy (server-wide): the addresses a header lists are hops, the client first; each
proxy appends the address it saw. Walking from the right, each hop is believed only
while the one that reported it is trusted; the first untrusted address is the client
(a client can prepend anything, but cannot get past its own proxy's entry). A hop that
does not parse as an IP address (``unknown``, an obfuscated ``_name``, garbage) stops
the walk: nothing to its left is believed. The scheme and host come from the same hop's
element of ``Forwarded``, or from the ``X-Forwarded-Proto``/``-Host`` value at the same
position (the nearest proxy's value when the lists do not line up). A scheme other than
``http``/``https`` or a host that is not a host name or IP literal (with an optional
port) is ignored. Connections without an IP address (a UNIX socket from a local proxy)
count as trusted whenever the setting is not empty, as in gunicorn.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..event import H3Event

__all__ = [
    "TrustedProxies",
    "apply_forwarded",
    "get_request_host",
    "get_request_ip",
    "get_request_protocol",
    "get_request_url",
    "parse_forwarded",
    "trusted_proxies",
]

_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# RFC 7239 §4: forwarded-pair = token "=" value; value = token / quoted-string
_PAIR: Final = re.compile(rf"\s*({_TOKEN})=({_TOKEN}|\"(?:[^\"\\]|\\.)*\")\s*")
_HOST: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)(?::[0-9]{1,5})?"
)
_SCHEMES: Final = ("http", "https")


class TrustedProxies:
    """The proxies ``forwarded_allow_ips`` names: addresses and networks, or ``*``."""

    __slots__ = ("any", "networks")

    def __init__(self, spec: str) -> None:
        self.any = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            if item == "*":
                self.any = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(item))
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {item!r} is not an IP address, a network such as "
                    "10.0.0.0/8, or '*'"
                ) from None

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if self.any:
            return True
        if not isinstance(address, str):
            return False
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.networks)


@functools.lru_cache(maxsize=16)
def trusted_proxies(spec: str) -> TrustedProxies:
    """``TrustedProxies(spec)``, parsed once per distinct setting."""
    return TrustedProxies(spec)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _node_ip(node: str) -> str | None:
    """The IP address in a ``for=`` node or an ``X-Forwarded-For`` entry, or None.

    Accepts ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``, ``[2001:db8::1]:4711``.
    """
    node = node.strip()
    if node.startswith("["):
        literal, bracket, rest = node[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        ip = _ip(literal)
        return str(ip) if ip is not None and ip.version == 6 else None
    ip = _ip(node)
    if ip is None and node.count(":") == 1:
        host, _, port = node.partition(":")
        ip = _ip(host) if port.isdigit() else None  # one colon: never an IPv6 address
    return None if ip is None else str(ip)


def _split_elements(value: str) -> list[str]:
    """Split on commas outside quoted strings."""
    elements: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            elements.append("".join(current))
            current = []
            continue
        current.append(char)
    elements.append("".join(current))
    return elements


def _parse_element(element: str) -> dict[str, str] | None:
    pairs: dict[str, str] = {}
    for pair in element.split(";") if element.strip() else []:
        if not pair.strip():
            continue
        match = _PAIR.fullmatch(pair)
        if match is None:
            return None
        name, value = match.group(1).lower(), match.group(2)
        if value[:1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if name in pairs:  # RFC 7239 §4: a parameter MUST NOT occur more than once
            return None
        pairs[name] = value
    return pairs


def parse_forwarded(value: str) -> list[dict[str, str] | None]:
    """RFC 7239 ``Forwarded`` elements, the client's first; None for one that does not
    parse (the others are still read, each on its own)."""
    return [_parse_element(element) for element in _split_elements(value)]


def _first(value: str | None) -> str | None:
    if value is None:
        return None
    return value.split(",", 1)[0].strip() or None


def _scheme(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in _SCHEMES else None


def _host(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if value and _HOST.fullmatch(value) else None


# -- per call, opt-in (H3's names) ------------------------------------------------------------


def get_request_ip(event: H3Event, *, x_forwarded_for: bool = False) -> str | None:
    """The client's address: ``event.remote_addr``, or with ``x_forwarded_for=True`` the
    first address in ``X-Forwarded-For`` (when it is one)."""
    if x_forwarded_for:
        forwarded = _node_ip(_first(event.headers.get("x-forwarded-for")) or "")
        if forwarded is not None:
            return forwarded
    return event.remote_addr


def get_request_host(event: H3Event, *, x_forwarded_host: bool = False) -> str:
    """The host (and port) the client asked for: ``Host``, or ``X-Forwarded-Host``."""
    if x_forwarded_host:
        forwarded = _host(_first(event.headers.get("x-forwarded-host")))
        if forwarded is not None:
            return forwarded
    return event.host


def get_request_protocol(event: H3Event, *, x_forwarded_proto: bool = False) -> str:
    """``"http"`` or ``"https"``: the connection's, or ``X-Forwarded-Proto``'s."""
    if x_forwarded_proto:
        forwarded = _scheme(_first(event.headers.get("x-forwarded-proto")))
        if forwarded is not None:
            return forwarded
    return event.scheme


def get_request_url(
    event: H3Event, *, x_forwarded_host: bool = False, x_forwarded_proto: bool = False
) -> str:
    """The full URL the client used: scheme, host, path and query."""
    target = event.target
    if not target.startswith("/"):  # absolute-form: keep only the path and query
        target = "/" + target.partition("://")[2].partition("/")[2]
    scheme = get_request_protocol(event, x_forwarded_proto=x_forwarded_proto)
    return f"{scheme}://{get_request_host(event, x_forwarded_host=x_forwarded_host)}{target}"


# -- server-wide, for trusted proxies only -------------------------------------------------------


def _pick(values: list[str], hops: int, index: int | None) -> str | None:
    """The value reported along with hop *index*, or else the nearest proxy's."""
    if not values:
        return None
    if index is not None and len(values) == hops:
        return values[index]
    return values[-1]


def apply_forwarded(event: H3Event, spec: str) -> None:
    """Take the client's address, scheme and host from the forwarding headers, if the
    peer is one of the proxies *spec* (``forwarded_allow_ips``) trusts."""
    trusted = trusted_proxies(spec)
    peer = event.remote_addr
    if not trusted or (peer and peer not in trusted):
        return
    headers = event.headers
    forwarded = headers.getall("forwarded")
    if forwarded:
        elements = parse_forwarded(",".join(forwarded))
        hops = [_node_ip(element.get("for", "")) if element is not None else None for element in elements]
    else:
        elements = []
        hops = [_node_ip(entry) for value in headers.getall("x-forwarded-for") for entry in value.split(",")]
    # index: the last hop whose entry was reported by a trusted party (None: no entry).
    client, index = peer, None
    for position in range(len(hops) - 1, -1, -1):
        if client and client not in trusted:
            break
        index = position
        hop = hops[position]
        if hop is None:
            break
        client = hop
    if client != peer:
        event.remote_addr = client
    if forwarded:
        element = None if index is None else elements[index]
        if element is None:
            return
        scheme, host = _scheme(element.get("proto")), _host(element.get("host"))
    else:
        protos = [v.strip() for value in headers.getall("x-forwarded-proto") for v in value.split(",")]
        hosts = [v.strip() for value in headers.getall("x-forwarded-host") for v in value.split(",")]
        scheme = _scheme(_pick(protos, len(hops), index))
        host = _host(_pick(hosts, len(hops), index))
    if scheme is not None:
        event.scheme = scheme
    if host is not None:
        headers.set("host", host)
