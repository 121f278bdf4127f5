"""Request-path normalisation and method-aware routing. No I/O.

Strategy:

* ``normalize_path`` turns the path of a request target into one canonical
  string, so that routing (and any access check built on it) sees exactly one
  spelling of each resource: ``/%61dmin``, ``//admin`` and ``/x/../admin`` are
  all ``/admin``. Percent-escapes are decoded *before* dot segments are
  removed, so ``/%2e%2e/etc`` cannot climb out as a literal ``..`` later. A
  decoded ``%2F`` therefore becomes a separator; the canonical path has no way
  to express a slash inside a segment, which is the price of a single spelling.
* ``Router`` keeps two structures built at ``add`` time: a dict of fully
  static paths (one hash lookup for the common request) and a segment tree for
  patterns with parameters. The tree is searched depth first in precedence
  order (static > ``:param`` > ``*`` > ``**``) and backtracks, so a more
  specific branch that dead-ends does not hide a less specific one that fits.
* A node that matches the path but has no handler for the method does not end
  the search: a lower-precedence node that accepts the method still wins. Only
  when no node accepts it do we walk again to gather ``allowed`` for the 405;
  that second walk is on the error path, so the hot path never builds sets.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

__all__ = ["METHOD_TOKEN", "InvalidPath", "RouteMatch", "Router", "normalize_path"]

T = TypeVar("T")


class InvalidPath(ValueError):
    """The client sent a path that has no canonical form (the client's fault: 400)."""


_ESCAPE_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _decode_run(m: re.Match[str]) -> str:
    # A run of consecutive escapes is decoded as one byte string because a
    # multi-byte UTF-8 character is spread across several escapes.
    try:
        return bytes.fromhex(m.group().replace("%", "")).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPath("path is not valid UTF-8") from None


def normalize_path(raw: str) -> str:
    """Return the canonical routing path for the path part of a request target.

    Percent-escapes are decoded (strict UTF-8), repeated slashes collapse,
    ``.`` segments go and ``..`` segments remove their parent but never climb
    above the root. A trailing slash is kept as given, and a final ``.`` or
    ``..`` segment leaves one (RFC 3986 section 5.2.4: "/a/b/.." is "/a/").
    Raises `InvalidPath` for a path not starting with ``/``, a malformed
    escape, invalid UTF-8 or a NUL byte.
    """
    if raw[:1] != "/":
        if "://" in raw:  # what H3Event leaves of a malformed absolute-form target
            raise InvalidPath("malformed absolute-form request target")
        raise InvalidPath("path must start with '/'")
    # PERF: nearly every real path is already canonical; four substring scans
    # in C let it through untouched, without splitting or allocating.
    if "%" not in raw and "//" not in raw and "/." not in raw and "\x00" not in raw:
        return raw
    path = raw
    if "%" in path:
        if _BAD_ESCAPE.search(path) is not None:
            raise InvalidPath("malformed percent-escape in path")
        path = _ESCAPE_RUN.sub(_decode_run, path)
    # Checked after decoding so that "%00" is caught as well as a raw NUL.
    if "\x00" in path:
        raise InvalidPath("NUL byte in path")
    segments = path.split("/")
    out: list[str] = []
    for seg in segments:
        if seg == "..":
            if out:
                out.pop()
        elif seg and seg != ".":
            out.append(seg)
    if not out:
        return "/"
    canonical = "/" + "/".join(out)
    return canonical + "/" if segments[-1] in ("", ".", "..") else canonical


class RouteMatch(Generic[T]):
    """The outcome of `Router.match`.

    ``handler`` is None when nothing accepts the request: ``allowed`` is then
    the sorted methods that would be accepted at this path (405), or empty when
    no route matches the path at all (404). When a handler is found,
    ``allowed`` is left empty rather than computed.

    ``params`` maps each parameter name to its (already decoded) value. A
    ``**:name`` value is the rest of the path without its leading slash, ``""``
    when it matched zero segments. Unnamed ``*`` and ``**`` segments are named
    ``"_0"``, ``"_1"``, ... in the order they appear in the pattern, as H3
    does.

    A HEAD request without a HEAD route gets the GET handler (the server drops
    the body). ``pattern`` is the route pattern as registered (``"/users/:id"``),
    None when nothing matched.
    """

    __slots__ = ("allowed", "handler", "params", "pattern")

    def __init__(
        self,
        handler: T | None,
        params: dict[str, str],
        allowed: tuple[str, ...] = (),
        pattern: str | None = None,
    ) -> None:
        self.handler = handler
        self.params = params
        self.allowed = allowed
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"RouteMatch(handler={self.handler!r}, params={self.params!r}, allowed={self.allowed!r})"


class _Route(Generic[T]):
    __slots__ = ("handler", "method", "names", "pattern")

    def __init__(self, method: str, pattern: str, handler: T, names: tuple[str, ...]) -> None:
        self.method = method
        self.pattern = pattern
        self.handler = handler
        # Parameter names are kept per route, not per node, so "/a/:x" GET and
        # "/a/:y" POST can share a node and still report their own names.
        self.names = names


# A method table: method (or "*") -> route.
_Table = dict[str, _Route[T]]


class _Node(Generic[T]):
    __slots__ = ("catchall", "param", "routes", "star", "static")

    def __init__(self) -> None:
        self.static: dict[str, _Node[T]] = {}
        self.param: _Node[T] | None = None
        self.star: _Node[T] | None = None
        self.routes: _Table[T] = {}  # patterns ending at this node
        self.catchall: _Table[T] = {}  # patterns ending in "**" below this node


#: RFC 9110 §9.1: a method is a token (§5.6.2), so M-SEARCH and other extensions
#: qualify; upper case only, so that "get" is a registration error rather than a route
#: that never matches. The one pattern for the app and the router.
METHOD_TOKEN = re.compile(r"[A-Z0-9!#$%&'*+.^_`|~-]+")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _param_name(name: str, pattern: str) -> str:
    if not name:
        raise ValueError(f"empty parameter name in route pattern {pattern!r}")
    if _PARAM_NAME.fullmatch(name) is None:
        raise ValueError(f"invalid parameter name {name!r} in route pattern {pattern!r}")
    return name


def _parse_pattern(
    pattern: str,
) -> tuple[list[tuple[str, str]], tuple[str, ...], bool]:
    """Split a route pattern into (kind, text) tree segments, its parameter
    names, and whether it ends in a catch-all ("**" is not a tree segment).

    Kinds are "s" (static), ":" and "*". Everything is validated here, before
    the tree is touched, so a bad pattern leaves the router unchanged.
    """
    if pattern[:1] != "/":
        raise ValueError(f"route pattern must start with '/': {pattern!r}")
    if "//" in pattern:
        raise ValueError(f"empty segment in route pattern {pattern!r}")
    body = pattern[1:-1] if pattern.endswith("/") else pattern[1:]
    segments = body.split("/") if body else []
    kinds: list[tuple[str, str]] = []
    names: list[str] = []
    unnamed = 0
    for i, seg in enumerate(segments):
        if seg in ("*", "**"):
            kind, name = seg, f"_{unnamed}"
            unnamed += 1
        elif seg.startswith("**:"):
            kind, name = "**", _param_name(seg[3:], pattern)
        elif seg.startswith(":"):
            kind, name = ":", _param_name(seg[1:], pattern)
        elif seg in (".", ".."):
            raise ValueError(f"dot segment {seg!r} in route pattern {pattern!r} can never match")
        elif "*" in seg:
            raise ValueError(
                f"'*' must be a whole segment ('*', '**' or '**:name') in route pattern {pattern!r}"
            )
        else:
            kinds.append(("s", seg))
            continue
        if kind == "**" and i != len(segments) - 1:
            raise ValueError(f"'**' must be the last segment in route pattern {pattern!r}")
        if name in names:
            raise ValueError(f"duplicate parameter name {name!r} in route pattern {pattern!r}")
        names.append(name)
        if kind == "**":
            return kinds, tuple(names), True
        kinds.append((kind, seg))
    return kinds, tuple(names), False


def _resolve(table: _Table[T], method: str, values: list[str]) -> RouteMatch[T] | None:
    route = table.get(method) or table.get("*")
    if route is None:
        if method != "HEAD":
            return None
        route = table.get("GET")
        if route is None:
            return None
    params = dict(zip(route.names, values, strict=True))
    return RouteMatch(route.handler, params, (), route.pattern)


class Router(Generic[T]):
    """Maps (method, normalized path) to a handler of any type ``T``.

    Pattern segments: ``name`` (static), ``:name`` (one non-empty segment),
    ``*`` (one non-empty segment, unnamed), ``**`` / ``**:name`` (the rest of
    the path, zero or more segments; last segment only). A trailing slash in a
    pattern or a path is ignored, so ``/users`` and ``/users/`` are one route.
    """

    __slots__ = ("_root", "_routes", "_static")

    def __init__(self) -> None:
        # Fully static path (no trailing slash) -> the method table of its node.
        self._static: dict[str, _Table[T]] = {}
        self._root: _Node[T] = _Node()
        # (method, pattern shape) -> route; a dict keeps registration order and
        # lets a re-registration replace the route in place.
        self._routes: dict[tuple[str, str], _Route[T]] = {}

    def add(self, method: str, path: str, handler: T) -> None:
        """Register ``handler`` for ``method`` ("*" for any) at pattern ``path``.

        Registering the same method and pattern shape again replaces the
        handler. Raises ValueError for an invalid method or pattern.
        """
        if method != "*" and METHOD_TOKEN.fullmatch(method) is None:
            raise ValueError(f"method must be an upper-case HTTP method or '*', got {method!r}")
        kinds, names, catchall = _parse_pattern(path)
        node = self._root
        shape: list[str] = []
        for kind, seg in kinds:
            if kind == "s":
                node = node.static.setdefault(seg, _Node())
            elif kind == ":":
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                if node.star is None:
                    node.star = _Node()
                node = node.star
            shape.append(seg if kind == "s" else kind)
        route = _Route(method, path, handler, names)
        if catchall:
            # "**" lives in its parent's catch-all table, not in a node.
            shape.append("**")
            node.catchall[method] = route
        else:
            node.routes[method] = route
            if not names:
                # PERF: the static table shares the node's dict, so later
                # registrations on this path need no second update.
                self._static["/" + "/".join(shape)] = node.routes
        self._routes[(method, "/" + "/".join(shape))] = route

    def match(self, method: str, path: str) -> RouteMatch[T]:
        """Find the handler for ``method`` at the already normalized ``path``."""
        key = path[:-1] if len(path) > 1 and path[-1] == "/" else path
        table = self._static.get(key)
        if table is not None:
            # PERF: a static route outranks every pattern, so a hit that
            # accepts the method is final and skips splitting the path.
            route = table.get(method) or table.get("*")
            if route is not None:
                return RouteMatch(route.handler, {}, (), route.pattern)
            if method == "HEAD":
                route = table.get("GET")
                if route is not None:
                    return RouteMatch(route.handler, {}, (), route.pattern)
        segments = key[1:].split("/") if len(key) > 1 else []
        # PERF: the first path _search would try (static child, else parameter) walked
        # without recursion; when it ends at a route for the method, that is _search's
        # answer too (~0.6 us less for "/users/:id"); otherwise the full search decides.
        node = self._root
        values: list[str] = []
        for seg in segments:
            child = node.static.get(seg)
            if child is None:
                child = node.param
                if child is None or not seg:
                    break
                values.append(seg)
            node = child
        else:
            if node.routes:
                found = _resolve(node.routes, method, values)
                if found is not None:
                    return found
        found = self._search(self._root, segments, 0, method, [])
        if found is not None:
            return found
        methods: set[str] = set()
        self._collect(self._root, segments, 0, methods)
        if "GET" in methods:
            methods.add("HEAD")
        return RouteMatch(None, {}, tuple(sorted(methods)))

    def _search(  # noqa: PLR0911 - one return per way a segment can match; PERF: no result objects
        self,
        node: _Node[T],
        segments: list[str],
        i: int,
        method: str,
        values: list[str],
    ) -> RouteMatch[T] | None:
        if i == len(segments):
            if node.routes:
                found = _resolve(node.routes, method, values)
                if found is not None:
                    return found
            if node.catchall:
                values.append("")
                found = _resolve(node.catchall, method, values)
                values.pop()
                return found
            return None
        seg = segments[i]
        child = node.static.get(seg)
        if child is not None:
            found = self._search(child, segments, i + 1, method, values)
            if found is not None:
                return found
        # A parameter never matches an empty segment (only reachable with an
        # unnormalized path such as "/a//b").
        if seg:
            child = node.param
            if child is not None:
                values.append(seg)
                found = self._search(child, segments, i + 1, method, values)
                values.pop()
                if found is not None:
                    return found
            child = node.star
            if child is not None:
                values.append(seg)
                found = self._search(child, segments, i + 1, method, values)
                values.pop()
                if found is not None:
                    return found
        if node.catchall:
            values.append("/".join(segments[i:]))
            found = _resolve(node.catchall, method, values)
            values.pop()
            return found
        return None

    def _collect(self, node: _Node[T], segments: list[str], i: int, methods: set[str]) -> None:
        # The same walk as _search, visiting every node that matches the path
        # instead of stopping at the first that accepts the method: the union
        # is exactly the set of methods this path would accept.
        methods.update(node.catchall)
        if i == len(segments):
            methods.update(node.routes)
            return
        seg = segments[i]
        child = node.static.get(seg)
        if child is not None:
            self._collect(child, segments, i + 1, methods)
        if seg:
            for child in (node.param, node.star):
                if child is not None:
                    self._collect(child, segments, i + 1, methods)

    def routes(self) -> list[tuple[str, str]]:
        """(method, pattern) for every route, in registration order."""
        return [(r.method, r.pattern) for r in self._routes.values()]
