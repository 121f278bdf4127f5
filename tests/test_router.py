"""Tests for h3green.router: path normalisation and routing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h3green.router import InvalidPath, RouteMatch, Router, normalize_path

# --- normalize_path -------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/a", "/a/b/", "/users/42", "/a..b/c.d", "/x:y/~z"])
def test_clean_path_is_returned_unchanged(path: str) -> None:
    # Build a fresh string so the identity check is not satisfied by interning.
    fresh = "".join(list(path))
    assert normalize_path(fresh) is fresh


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/%61dmin", "/admin"),
        ("/%2e%2e/etc", "/etc"),
        ("/a/%2E%2E/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/a/%2e/b", "/a/b"),
        ("//a///b", "/a/b"),
        ("//", "/"),
        ("/a//", "/a/"),
        ("/./a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/..", "/"),
        ("/..", "/"),
        ("/../../etc", "/etc"),
        ("/a/../../../b/", "/b/"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/..b/.c", "/a/..b/.c"),
        ("/caf%C3%A9", "/café"),
        ("/caf%c3%a9/%E2%82%AC", "/café/€"),
        ("/a%2Fb", "/a/b"),
        ("/a%2F%2Fb", "/a/b"),
        ("/100%25", "/100%"),
        ("/%2525", "/%25"),
        ("/a%20b", "/a b"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "must start with '/'"),
        ("*", "must start with '/'"),
        ("a/b", "must start with '/'"),
        ("http://x/a", "malformed absolute-form request target"),
        ("/%zz", "malformed percent-escape in path"),
        ("/%4", "malformed percent-escape in path"),
        ("/a%", "malformed percent-escape in path"),
        ("/%%41", "malformed percent-escape in path"),
        ("/%41%g1", "malformed percent-escape in path"),
        ("/%FF", "path is not valid UTF-8"),
        ("/%C3", "path is not valid UTF-8"),
        ("/%C3x", "path is not valid UTF-8"),
        ("/%C0%AF", "path is not valid UTF-8"),  # overlong "/"
        ("/%ED%A0%80", "path is not valid UTF-8"),  # surrogate
        ("/a%00b", "NUL byte in path"),
        ("/a\x00b", "NUL byte in path"),
    ],
)
def test_invalid_path(raw: str, message: str) -> None:
    with pytest.raises(InvalidPath, match=message):
        normalize_path(raw)


def test_invalid_path_is_value_error() -> None:
    assert issubclass(InvalidPath, ValueError)


def _check_canonical(out: str) -> None:
    assert out.startswith("/")
    assert "//" not in out
    assert "\x00" not in out
    segments = out.split("/")
    assert "." not in segments
    assert ".." not in segments


@given(st.text())
def test_normalize_property(raw: str) -> None:
    try:
        out = normalize_path(raw)
    except InvalidPath:
        return
    _check_canonical(out)


_path_alphabet = st.sampled_from(
    ["/", ".", "%", "2e", "2E", "2F", "00", "a", "é", ":", "*", "C3", "A9", "zz"]
)


@given(st.lists(_path_alphabet, max_size=20).map(lambda parts: "/" + "".join(parts)))
def test_normalize_property_targeted(raw: str) -> None:
    # Plain st.text() rarely produces escapes and dot segments; this does.
    try:
        out = normalize_path(raw)
    except InvalidPath:
        return
    _check_canonical(out)
    if "%" not in out:
        # Without escapes left to decode, canonical means a fixed point.
        assert normalize_path(out) == out


_property_router: Router[str] = Router()
for _pattern in [
    "/",
    "/a",
    "/a/b",
    "/a/:x",
    "/a/:x/c",
    "/a/*/d",
    "/a/**:rest",
    "/:p/:q",
    "/*/*/*",
    "/s/**",
]:
    _property_router.add("GET", _pattern, _pattern)
_property_router.add("POST", "/a/b", "post")


@given(
    st.sampled_from(["GET", "HEAD", "POST", "DELETE"]),
    st.one_of(
        st.text(),
        st.lists(st.sampled_from(["a", "b", "c", "d", "s", "..", ".", "", "%2e"]), max_size=6).map(
            lambda parts: "/" + "/".join(parts)
        ),
    ),
)
def test_match_never_raises(method: str, raw: str) -> None:
    try:
        path = normalize_path(raw)
    except InvalidPath:
        return
    m = _property_router.match(method, path)
    assert (m.handler is None) or (m.allowed == ())
    assert list(m.allowed) == sorted(m.allowed)


# --- Router: pattern kinds -----------------------------------------------


def test_static_route() -> None:
    r: Router[str] = Router()
    r.add("GET", "/", "root")
    r.add("GET", "/users", "users")
    r.add("GET", "/users/list/all", "all")
    assert r.match("GET", "/").handler == "root"
    m = r.match("GET", "/users")
    assert m.handler == "users"
    assert m.params == {}
    assert m.allowed == ()
    assert r.match("GET", "/users/list/all").handler == "all"
    assert r.match("GET", "/users/list").handler is None


def test_param_route() -> None:
    r: Router[str] = Router()
    r.add("GET", "/users/:id", "user")
    r.add("GET", "/users/:id/posts/:post_id", "post")
    m = r.match("GET", "/users/42")
    assert m.handler == "user"
    assert m.params == {"id": "42"}
    m = r.match("GET", "/users/42/posts/7")
    assert m.params == {"id": "42", "post_id": "7"}
    assert r.match("GET", "/users").handler is None
    assert r.match("GET", "/users/42/posts").handler is None


def test_param_values_are_decoded_by_normalize() -> None:
    r: Router[str] = Router()
    r.add("GET", "/c/:name", "c")
    assert r.match("GET", normalize_path("/c/caf%C3%A9")).params == {"name": "café"}


def test_param_never_matches_empty_segment() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/:x/b", "param")
    r.add("GET", "/s/*/b", "star")
    # Only an unnormalized path can contain an empty segment.
    assert r.match("GET", "/a//b").handler is None
    assert r.match("GET", "/s//b").handler is None
    assert r.match("GET", "/a/1/b").handler == "param"


def test_unnamed_star() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/*/b/*", "h")
    m = r.match("GET", "/a/x/b/y")
    assert m.handler == "h"
    assert m.params == {"_0": "x", "_1": "y"}
    assert r.match("GET", "/a/x/b").handler is None
    assert r.match("GET", "/a/x/b/y/z").handler is None


def test_unnamed_numbering_skips_named_params() -> None:
    r: Router[str] = Router()
    r.add("GET", "/:x/*/:y/**", "h")
    assert r.match("GET", "/1/2/3/4/5").params == {
        "x": "1",
        "_0": "2",
        "y": "3",
        "_1": "4/5",
    }


def test_catchall_unnamed() -> None:
    r: Router[str] = Router()
    r.add("GET", "/static/**", "s")
    assert r.match("GET", "/static/css/site.css").params == {"_0": "css/site.css"}
    assert r.match("GET", "/static/x").params == {"_0": "x"}
    # Zero segments, with and without a trailing slash.
    assert r.match("GET", "/static").params == {"_0": ""}
    assert r.match("GET", "/static/").params == {"_0": ""}
    assert r.match("GET", "/statics").handler is None


def test_catchall_named() -> None:
    r: Router[str] = Router()
    r.add("GET", "/files/:bucket/**:path", "f")
    m = r.match("GET", "/files/b1/a/b/c.txt")
    assert m.handler == "f"
    assert m.params == {"bucket": "b1", "path": "a/b/c.txt"}
    assert r.match("GET", "/files/b1").params == {"bucket": "b1", "path": ""}


def test_catchall_at_root() -> None:
    r: Router[str] = Router()
    r.add("GET", "/**:all", "all")
    assert r.match("GET", "/").params == {"all": ""}
    assert r.match("GET", "/a/b").params == {"all": "a/b"}


def test_catchall_keeps_trailing_segments_but_not_trailing_slash() -> None:
    r: Router[str] = Router()
    r.add("GET", "/s/**:p", "s")
    assert r.match("GET", "/s/a/b/").params == {"p": "a/b"}


def test_param_names_are_per_route() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/:x", "get")
    r.add("POST", "/a/:y", "post")
    assert r.match("GET", "/a/1").params == {"x": "1"}
    assert r.match("POST", "/a/1").params == {"y": "1"}


def test_params_dict_is_fresh_per_match() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "a")
    m1 = r.match("GET", "/a")
    m1.params["x"] = "y"
    assert r.match("GET", "/a").params == {}


# --- precedence and backtracking -------------------------------------------


def test_precedence_static_param_star_catchall() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/**", "catchall")
    r.add("GET", "/a/*", "star")
    r.add("GET", "/a/:x", "param")
    r.add("GET", "/a/b", "static")
    assert r.match("GET", "/a/b").handler == "static"
    assert r.match("GET", "/a/c").handler == "param"
    assert r.match("GET", "/a/c/d").handler == "catchall"
    assert r.match("GET", "/a").handler == "catchall"


def test_star_beats_catchall() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/**", "catchall")
    r.add("GET", "/a/*", "star")
    assert r.match("GET", "/a/c").handler == "star"
    assert r.match("GET", "/a/c").params == {"_0": "c"}


def test_backtracking_static_to_param() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/:x/c", "param")
    r.add("GET", "/a/b/d", "static")
    m = r.match("GET", "/a/b/c")
    assert m.handler == "param"
    assert m.params == {"x": "b"}
    assert r.match("GET", "/a/b/d").handler == "static"


def test_backtracking_param_to_star_to_catchall() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/:x/c", "param")
    r.add("GET", "/a/*/d", "star")
    r.add("GET", "/a/**:rest", "rest")
    assert r.match("GET", "/a/b/c").handler == "param"
    assert r.match("GET", "/a/b/d").params == {"_0": "b"}
    assert r.match("GET", "/a/b/e").params == {"rest": "b/e"}


def test_backtracking_does_not_leak_params() -> None:
    r: Router[str] = Router()
    r.add("GET", "/:x/:y/z", "deep")
    r.add("GET", "/:a/**:rest", "rest")
    assert r.match("GET", "/1/2/q").params == {"a": "1", "rest": "2/q"}


def test_exact_node_beats_catchall_zero_segments() -> None:
    r: Router[str] = Router()
    r.add("GET", "/static", "exact")
    r.add("GET", "/static/**", "catchall")
    assert r.match("GET", "/static").handler == "exact"
    assert r.match("GET", "/static/").handler == "exact"
    assert r.match("GET", "/static/x").handler == "catchall"


def test_dynamic_match_below_static_prefix() -> None:
    r: Router[str] = Router()
    r.add("GET", "/users", "list")
    r.add("GET", "/users/:id", "one")
    assert r.match("GET", "/users/7").handler == "one"


# --- trailing slash ----------------------------------------------------------


def test_trailing_slash_in_path() -> None:
    r: Router[str] = Router()
    r.add("GET", "/users", "list")
    r.add("GET", "/users/:id", "one")
    assert r.match("GET", "/users/").handler == "list"
    assert r.match("GET", "/users/7/").params == {"id": "7"}


def test_trailing_slash_in_pattern() -> None:
    r: Router[str] = Router()
    r.add("GET", "/users/", "list")
    r.add("GET", "/p/:id/", "p")
    assert r.match("GET", "/users").handler == "list"
    assert r.match("GET", "/users/").handler == "list"
    assert r.match("GET", "/p/1").params == {"id": "1"}


def test_trailing_slash_variants_are_one_route() -> None:
    r: Router[str] = Router()
    r.add("GET", "/users", "first")
    r.add("GET", "/users/", "second")
    assert r.match("GET", "/users").handler == "second"
    assert r.routes() == [("GET", "/users/")]


# --- methods ----------------------------------------------------------------


def test_head_falls_back_to_get() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "get")
    r.add("GET", "/p/:x", "pget")
    m = r.match("HEAD", "/a")
    assert m.handler == "get"
    m = r.match("HEAD", "/p/1")
    assert m.handler == "pget"
    assert m.params == {"x": "1"}
    assert r.match("GET", "/a").handler == "get"


def test_explicit_head_wins_over_get() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "get")
    r.add("HEAD", "/a", "head")
    r.add("GET", "/p/:x", "pget")
    r.add("HEAD", "/p/:x", "phead")
    for path, expected in [("/a", "head"), ("/p/1", "phead")]:
        m = r.match("HEAD", path)
        assert m.handler == expected


def test_any_method_wins_over_head_fallback() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "get")
    r.add("*", "/a", "any")
    r.add("GET", "/p/:x", "pget")
    r.add("*", "/p/:x", "pany")
    for path, expected in [("/a", "any"), ("/p/1", "pany")]:
        m = r.match("HEAD", path)
        assert m.handler == expected


def test_head_without_get_is_405() -> None:
    r: Router[str] = Router()
    r.add("POST", "/a", "post")
    r.add("POST", "/p/:x", "ppost")
    for path in ["/a", "/p/1"]:
        m = r.match("HEAD", path)
        assert m.handler is None
        assert m.allowed == ("POST",)


def test_any_method() -> None:
    r: Router[str] = Router()
    r.add("*", "/a", "any")
    r.add("GET", "/a", "get")
    r.add("*", "/p/:x", "pany")
    assert r.match("GET", "/a").handler == "get"
    assert r.match("DELETE", "/a").handler == "any"
    assert r.match("PURGE", "/a").handler == "any"
    assert r.match("PATCH", "/p/1").handler == "pany"


def test_405_allowed_sorted_with_head() -> None:
    r: Router[str] = Router()
    r.add("POST", "/a", "post")
    r.add("GET", "/a", "get")
    r.add("DELETE", "/a", "del")
    m = r.match("PUT", "/a")
    assert m.handler is None
    assert m.allowed == ("DELETE", "GET", "HEAD", "POST")
    assert m.params == {}


def test_405_does_not_add_options() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "get")
    assert r.match("OPTIONS", "/a").allowed == ("GET", "HEAD")


def test_405_on_dynamic_route() -> None:
    r: Router[str] = Router()
    r.add("PUT", "/u/:id", "put")
    m = r.match("GET", "/u/1/")
    assert m.handler is None
    assert m.allowed == ("PUT",)


def test_405_on_catchall_route() -> None:
    r: Router[str] = Router()
    r.add("PUT", "/f/**", "put")
    assert r.match("GET", "/f/a/b").allowed == ("PUT",)
    assert r.match("GET", "/f").allowed == ("PUT",)


def test_method_falls_through_to_lower_precedence_node() -> None:
    r: Router[str] = Router()
    r.add("GET", "/files/readme", "readme")
    r.add("*", "/files/**", "files")
    m = r.match("POST", "/files/readme")
    assert m.handler == "files"
    assert m.params == {"_0": "readme"}
    assert r.match("GET", "/files/readme").handler == "readme"
    # HEAD is served by the static GET route (fallback), not the catch-all.
    m = r.match("HEAD", "/files/readme")
    assert m.handler == "readme"


def test_method_falls_through_static_to_param() -> None:
    r: Router[str] = Router()
    r.add("GET", "/u/me", "me")
    r.add("DELETE", "/u/:id", "delete")
    m = r.match("DELETE", "/u/me")
    assert m.handler == "delete"
    assert m.params == {"id": "me"}


def test_method_falls_through_param_to_catchall_at_end() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "get")
    r.add("POST", "/a/**", "post")
    assert r.match("POST", "/a").handler == "post"


def test_405_allowed_is_union_over_matching_nodes() -> None:
    r: Router[str] = Router()
    r.add("GET", "/files/readme", "readme")
    r.add("PUT", "/files/:name", "put")
    r.add("POST", "/files/*", "post")
    r.add("PATCH", "/files/**", "patch")
    r.add("DELETE", "/other/:x", "elsewhere")
    m = r.match("OPTIONS", "/files/readme")
    assert m.handler is None
    assert m.allowed == ("GET", "HEAD", "PATCH", "POST", "PUT")
    # Every method listed does in fact match.
    for method in m.allowed:
        assert r.match(method, "/files/readme").handler is not None


def test_405_allowed_ignores_non_matching_nodes() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/:x/c", "c")
    r.add("POST", "/a/:x/d", "d")
    assert r.match("PUT", "/a/b/c").allowed == ("GET", "HEAD")


def test_404_has_empty_allowed() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "a")
    r.add("GET", "/b/:x", "b")
    r.add("GET", "/c/*", "c")
    for path in ["/", "/nope", "/a/b", "/b", "/b/1/2", "/c"]:
        m = r.match("GET", path)
        assert m.handler is None
        assert m.allowed == ()
        assert m.params == {}


def test_empty_router_is_404() -> None:
    r: Router[str] = Router()
    assert r.match("GET", "/").allowed == ()
    assert r.match("GET", "/a").allowed == ()


def test_unnormalized_path_does_not_raise() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/:x", "a")
    r.add("GET", "/**", "all")
    for path in ["", "a", "//", "/a//", "/a/./b"]:
        assert isinstance(r.match("GET", path), RouteMatch)


# --- registration --------------------------------------------------------------


def test_reregister_replaces_handler() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a", "old")
    r.add("GET", "/p/:x", "pold")
    r.add("GET", "/s/**", "sold")
    r.add("POST", "/a", "post")
    r.add("GET", "/a", "new")
    r.add("GET", "/p/:renamed", "pnew")
    r.add("GET", "/s/**:rest", "snew")
    assert r.match("GET", "/a").handler == "new"
    assert r.match("POST", "/a").handler == "post"
    m = r.match("GET", "/p/1")
    assert m.handler == "pnew"
    assert m.params == {"renamed": "1"}
    assert r.match("GET", "/s/x").params == {"rest": "x"}
    # Replacement keeps the original registration slot, with the new pattern.
    assert r.routes() == [
        ("GET", "/a"),
        ("GET", "/p/:renamed"),
        ("GET", "/s/**:rest"),
        ("POST", "/a"),
    ]


def test_routes_in_registration_order() -> None:
    r: Router[int] = Router()
    r.add("POST", "/z", 1)
    r.add("GET", "/a/:x", 2)
    r.add("*", "/**", 3)
    r.add("GET", "/a/*", 4)
    assert r.routes() == [
        ("POST", "/z"),
        ("GET", "/a/:x"),
        ("*", "/**"),
        ("GET", "/a/*"),
    ]
    assert Router[int]().routes() == []


def test_param_and_star_are_distinct_routes() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/:x", "param")
    r.add("GET", "/a/*", "star")
    assert len(r.routes()) == 2
    assert r.match("GET", "/a/b").handler == "param"


@pytest.mark.parametrize("method", ["GET", "M-SEARCH", "PROPFIND", "*"])
def test_valid_methods(method: str) -> None:
    r: Router[str] = Router()
    r.add(method, "/a", "h")
    assert r.match(method if method != "*" else "ANY", "/a").handler == "h"


@pytest.mark.parametrize("method", ["get", "", "GET POST", "Get", "G\u00c9T"])
def test_invalid_method(method: str) -> None:
    r: Router[str] = Router()
    with pytest.raises(ValueError, match="method must be an upper-case HTTP method or '\\*'"):
        r.add(method, "/a", "h")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", r"route pattern must start with '/': ''"),
        ("a/b", r"route pattern must start with '/': 'a/b'"),
        ("*", r"route pattern must start with '/'"),
        ("//", r"empty segment in route pattern '//'"),
        ("/a//b", r"empty segment in route pattern '/a//b'"),
        ("/a//", r"empty segment"),
        ("/**/a", r"'\*\*' must be the last segment in route pattern '/\*\*/a'"),
        ("/**:rest/a", r"'\*\*' must be the last segment"),
        ("/a/:", r"empty parameter name in route pattern '/a/:'"),
        ("/a/**:", r"empty parameter name in route pattern '/a/\*\*:'"),
        ("/a/:1x", r"invalid parameter name '1x' in route pattern"),
        ("/a/:x-y", r"invalid parameter name 'x-y'"),
        ("/a/**:a/b", r"invalid parameter name 'a/b'|'\*\*' must be the last"),
        ("/:x/:x", r"duplicate parameter name 'x' in route pattern '/:x/:x'"),
        ("/:x/**:x", r"duplicate parameter name 'x'"),
        ("/:_0/*", r"duplicate parameter name '_0'"),
        ("/a/./b", r"dot segment '\.' in route pattern '/a/\./b' can never match"),
        ("/a/..", r"dot segment '\.\.'"),
        (
            "/files/*.txt",
            r"'\*' must be a whole segment \('\*', '\*\*' or '\*\*:name'\)",
        ),
        ("/a/***", r"'\*' must be a whole segment"),
    ],
)
def test_invalid_pattern(pattern: str, message: str) -> None:
    r: Router[str] = Router()
    with pytest.raises(ValueError, match=message):
        r.add("GET", pattern, "h")
    # A rejected pattern leaves the router untouched.
    assert r.routes() == []
    assert r._root.static == {}
    assert r._root.param is None


def test_static_colon_segment_is_literal() -> None:
    r: Router[str] = Router()
    r.add("GET", "/v1/jobs/x:run", "run")
    assert r.match("GET", "/v1/jobs/x:run").handler == "run"
    assert r.match("GET", "/v1/jobs/y:run").handler is None


def test_handlers_of_any_type() -> None:
    def handler() -> int:
        return 1

    r: Router[object] = Router()
    r.add("GET", "/f", handler)
    assert r.match("GET", "/f").handler is handler


def test_route_match_repr_and_slots() -> None:
    m: RouteMatch[str] = RouteMatch("h", {"x": "1"}, (), "/p/:x")
    assert repr(m) == "RouteMatch(handler='h', params={'x': '1'}, allowed=())"
    assert m.pattern == "/p/:x"
    assert not hasattr(m, "__dict__")
    default = RouteMatch[str](None, {})
    assert default.allowed == ()
    assert default.pattern is None
    assert not hasattr(Router[str](), "__dict__")


def test_routes_share_wildcard_nodes() -> None:
    r: Router[str] = Router()
    r.add("GET", "/a/*/b", "b")
    r.add("GET", "/a/*/c", "c")
    r.add("GET", "/a/:x/d", "d")
    r.add("GET", "/a/:y/e", "e")
    assert r.match("GET", "/a/1/b").handler == "b"
    assert r.match("GET", "/a/1/c").handler == "c"
    assert r.match("GET", "/a/1/d").params == {"x": "1"}
    assert r.match("GET", "/a/1/e").params == {"y": "1"}
