"""An in-memory CRUD API: items with a name and a quantity.

Run it with ``python examples/rest_api.py`` (PORT from the environment, 3000 by default)
or ``python -m h3green examples.rest_api:app``, then::

    curl -i http://127.0.0.1:3000/items
    curl -i -X POST http://127.0.0.1:3000/items -H 'content-type: application/json' \\
         -d '{"name": "apple", "quantity": 3}'
    curl -i http://127.0.0.1:3000/items/1
    curl -i -X PATCH http://127.0.0.1:3000/items/1 -d '{"quantity": 5}'
    curl -i -X DELETE http://127.0.0.1:3000/items/1

Answers: 201 with a Location header on create, 400 with the field errors in ``data``
for an invalid item, 404 for an unknown id, 405 (with ``Allow``) for a method a path
does not take, 204 on delete.
"""

if __name__ == "__main__":
    # Patch before anything imports socket, so blocking calls yield to other clients.
    from gevent import monkey

    monkey.patch_all()

import itertools
import os
from typing import Any

from h3green import H3, H3Event, HTTPError, Response, no_content, serve

MAX_NAME_LENGTH = 100
FIELDS = {"name", "quantity"}


class ItemStore:
    """Items by id. Greenlets switch only on I/O, so these dict updates need no lock."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        item = {"id": next(self._ids), **fields}
        self.items[item["id"]] = item
        return item


def validate(body: Any, *, partial: bool) -> dict[str, Any]:
    """The item fields in *body*, or an HTTPError 400 that lists every problem."""
    if not isinstance(body, dict):
        raise HTTPError(400, "expected a JSON object", data={"errors": {"body": "must be an object"}})
    errors: dict[str, str] = {}
    for unknown in sorted(set(body) - FIELDS):
        errors[unknown] = "unknown field"
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip():
            errors["name"] = "must be a non-empty string"
        elif len(name) > MAX_NAME_LENGTH:
            errors["name"] = f"must be at most {MAX_NAME_LENGTH} characters"
    elif not partial:
        errors["name"] = "is required"
    if "quantity" in body:
        quantity = body["quantity"]
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            errors["quantity"] = "must be a non-negative integer"
    if errors:
        raise HTTPError(400, "invalid item", data={"errors": errors})
    fields = {key: body[key] for key in FIELDS if key in body}
    if not partial:
        fields.setdefault("quantity", 0)
    return fields


def create_app() -> H3:
    """A fresh API with an empty store (tests make one each)."""
    store = ItemStore()
    app = H3()

    def find(event: H3Event) -> dict[str, Any]:
        raw = event.params["id"]
        if not raw.isdigit():
            raise HTTPError(400, "item id must be a positive integer", data={"id": raw})
        item = store.items.get(int(raw))
        if item is None:
            raise HTTPError(404, f"item {raw} not found")
        return item

    @app.get("/")
    def index(event: H3Event) -> dict[str, Any]:
        return {"name": "h3green REST example", "items": "/items", "count": len(store.items)}

    @app.get("/items")
    def list_items(event: H3Event) -> dict[str, Any]:
        items = list(store.items.values())
        name = event.get_query("name")
        if name is not None:
            items = [item for item in items if name.lower() in item["name"].lower()]
        return {"items": items, "count": len(items)}

    @app.post("/items")
    def create_item(event: H3Event) -> Response:
        item = store.create(validate(event.read_json(), partial=False))
        return Response(item, 201, {"location": f"/items/{item['id']}"})

    @app.get("/items/:id")
    def get_item(event: H3Event) -> dict[str, Any]:
        return find(event)

    @app.put("/items/:id")
    def replace_item(event: H3Event) -> dict[str, Any]:
        item = find(event)
        fields = validate(event.read_json(), partial=False)
        item.clear()
        item.update({"id": int(event.params["id"]), **fields})
        return item

    @app.patch("/items/:id")
    def update_item(event: H3Event) -> dict[str, Any]:
        item = find(event)
        item.update(validate(event.read_json(), partial=True))
        return item

    @app.delete("/items/:id")
    def delete_item(event: H3Event) -> Response:
        del store.items[find(event)["id"]]
        return no_content()

    return app


app = create_app()

if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
