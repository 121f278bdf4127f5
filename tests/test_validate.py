"""Validated bodies and queries: callables, pydantic models, and the 400 they answer with."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from conftest import ServeApp
from helpers import RawClient

from h3green import H3, H3Event, Headers, HTTPError
from h3green.testing import TestClient
from h3green.utils import get_validated_query, read_validated_body


class Item(pydantic.BaseModel):
    name: str
    price: float = pydantic.Field(gt=0)
    tags: list[str] = []


def positive_count(data: dict[str, Any]) -> dict[str, int]:
    count = int(data["count"])  # a KeyError or ValueError is the client's fault here
    if count < 1:
        raise ValueError("count must be at least 1")
    return {"count": count}


def make_app() -> H3:
    app = H3()

    @app.post("/items")
    def create(event: H3Event) -> dict[str, Any]:
        item = read_validated_body(event, Item)
        return item.model_dump()

    @app.post("/count")
    def count(event: H3Event) -> dict[str, int]:
        return read_validated_body(event, positive_count)

    @app.get("/search")
    def search(event: H3Event) -> Any:
        return get_validated_query(event, lambda q: isinstance(q.get("q"), str) and len(q["q"]) >= 2)

    @app.get("/admin")
    def admin(event: H3Event) -> Any:
        def only_admins(query: dict[str, Any]) -> bool:
            if query.get("role") != "admin":
                raise HTTPError(403, "admins only")
            return True

        return get_validated_query(event, only_admins)

    @app.get("/typed")
    def typed(event: H3Event) -> Any:
        class Page(pydantic.BaseModel):
            page: int = 1
            tag: list[str] = []

        return get_validated_query(event, Page).model_dump()

    return app


client = TestClient(make_app())


def test_a_pydantic_model_validates_and_returns_the_instance() -> None:
    response = client.post("/items", json={"name": "pen", "price": "1.5"})
    assert response.status == 200
    assert response.json() == {"name": "pen", "price": 1.5, "tags": []}


def test_pydantic_issues_name_fields_and_never_echo_input_or_traceback() -> None:
    response = client.post("/items", json={"price": -1, "tags": ["ok", 5]})
    assert response.status == 400
    body = response.json()
    assert body["message"] == "Validation failed"
    issues = body["data"]["issues"]
    assert {tuple(issue["path"]) for issue in issues} == {("name",), ("price",), ("tags", 1)}
    assert all(set(issue) == {"path", "message", "type"} for issue in issues)
    assert "Traceback" not in response.text and "-1" not in json.dumps(issues)


def test_a_non_object_body_fails_pydantic_validation() -> None:
    response = client.post("/items", json=[1, 2])
    assert response.status == 400 and response.json()["data"]["issues"][0]["path"] == []


def test_a_callable_cleans_the_value() -> None:
    assert client.post("/count", json={"count": "3"}).json() == {"count": 3}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"count": 0}, "count must be at least 1"),
        ({"count": "many"}, "invalid literal for int() with base 10: 'many'"),
        ({}, "'count'"),
    ],
)
def test_what_a_callable_raises_becomes_an_issue(body: dict[str, Any], message: str) -> None:
    response = client.post("/count", json=body)
    assert response.status == 400
    assert response.json()["data"] == {"issues": [{"path": [], "message": message}]}


def test_a_form_body_is_validated_as_a_dict() -> None:
    response = client.post("/count", data={"count": "2"})
    assert response.json() == {"count": 2}


def test_a_multipart_form_body_is_validated_as_a_dict() -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="count"\r\n\r\n3\r\n--b--\r\n'
    response = client.post("/count", data=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status == 200
    assert response.json() == {"count": 3}


def test_malformed_json_is_a_400_before_the_validator_runs() -> None:
    response = client.post("/count", data="{nope", headers={"content-type": "application/json"})
    assert response.status == 400 and response.json()["message"].startswith("invalid JSON")


def test_query_validation_true_keeps_false_rejects() -> None:
    assert client.get("/search?q=gevent&page=2").json() == {"q": "gevent", "page": "2"}
    rejected = client.get("/search?q=x")
    assert rejected.status == 400
    assert rejected.json()["data"] == {"issues": [{"path": [], "message": "the input was rejected"}]}


def test_query_with_a_pydantic_model_and_repeated_names() -> None:
    assert client.get("/typed?page=3&tag=a&tag=b").json() == {"page": 3, "tag": ["a", "b"]}
    response = client.get("/typed?page=x")
    assert response.status == 400 and response.json()["data"]["issues"][0]["path"] == ["page"]


def test_an_http_error_from_the_validator_passes_through() -> None:
    response = client.get("/admin?role=user")
    assert response.status == 403 and response.json()["message"] == "admins only"
    assert client.get("/admin?role=admin").json() == {"role": "admin"}


def test_none_keeps_the_input_and_a_non_validator_is_a_type_error() -> None:
    event = H3Event("GET", "/?a=1", Headers())
    assert get_validated_query(event, lambda q: None) == {"a": "1"}
    with pytest.raises(TypeError, match="callable or a pydantic model"):
        get_validated_query(event, 42)  # type: ignore[call-overload]
    with pytest.raises(HTTPError) as info:
        get_validated_query(event, lambda q: 1 / 0)
    assert info.value.data == {"issues": [{"path": [], "message": "division by zero"}]}


def test_an_exception_without_words_is_named_by_its_type() -> None:
    def silent(query: dict[str, Any]) -> None:
        raise LookupError

    with pytest.raises(HTTPError) as info:
        get_validated_query(H3Event("GET", "/", Headers()), silent)
    assert info.value.data == {"issues": [{"path": [], "message": "LookupError"}]}


@pytest.mark.live
def test_validation_over_a_real_socket(serve_app: ServeApp) -> None:
    server = serve_app(make_app())
    raw = RawClient(server.address)
    try:
        headers = [("content-type", "application/json")]
        status, _, body = raw.fetch("POST", "/items", b'{"name": "ink", "price": 2}', headers)
        assert status == 200 and json.loads(body)["name"] == "ink"
        status, _, body = raw.fetch("POST", "/items", b'{"name": "ink"}', headers)
        assert status == 400 and json.loads(body)["data"]["issues"][0]["path"] == ["price"]
    finally:
        raw.close()
