"""Validated input: ``read_validated_body(event, validator)`` and
``get_validated_query(event, validator)``.

A validator is either

* a callable taking the parsed input: it returns the cleaned value (``True`` or ``None``
  keep the input as it is), returns ``False`` to reject it, or raises; or
* a pydantic model class (pydantic v2, the ``h3green[pydantic]`` extra): the input goes
  through ``Model.model_validate`` and the model instance comes back.

Rejected input is a 400 ``"Validation failed"`` whose ``data`` is
``{"issues": [{"path": [...], "message": "..."}]}``: field paths and messages only, never
a traceback or the offending input echoed back. An ``HTTPError`` the validator raises
passes through unchanged, so it can answer 403 or 422 itself.

pydantic is never imported here: a model class can only exist once its module has been
imported by the application, so it is looked up in ``sys.modules``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..errors import HTTPError

if TYPE_CHECKING:
    from ..datastructures import MultiDict
    from ..event import H3Event
    from .multipart import FormData

__all__ = ["get_validated_query", "read_validated_body"]

T = TypeVar("T")
Issue = dict[str, Any]

_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _pydantic_model(validator: object) -> Any:
    """The pydantic module when *validator* is a pydantic model class, else None."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(validator, type) and issubclass(validator, pydantic.BaseModel):
        return pydantic
    return None


def _failed(issues: list[Issue]) -> HTTPError:
    return HTTPError(400, "Validation failed", data={"issues": issues})


def _validate(data: Any, validator: Any) -> Any:
    pydantic = _pydantic_model(validator)
    if pydantic is not None:
        try:
            return validator.model_validate(data)
        except pydantic.ValidationError as exc:
            issues = [
                {"path": list(error["loc"]), "message": error["msg"], "type": error["type"]}
                for error in exc.errors(include_url=False, include_input=False)
            ]
            raise _failed(issues) from None
    if not callable(validator):
        raise TypeError(f"validator must be a callable or a pydantic model class, got {validator!r}")
    try:
        result = validator(data)
    except HTTPError:
        raise
    except Exception as exc:
        # The validator's own words; never its traceback.
        raise _failed([{"path": [], "message": str(exc) or type(exc).__name__}]) from None
    if result is False:
        raise _failed([{"path": [], "message": "the input was rejected"}])
    if result is True or result is None:
        return data
    return result


def _as_dict(fields: MultiDict | FormData) -> dict[str, Any]:
    """Query or form fields as a dict: one value as itself, a repeated name as a list
    (form uploads stay ``UploadFile`` objects)."""
    result: dict[str, Any] = {}
    for name in fields.keys():  # noqa: SIM118 - FormData iterates its names only via keys()
        values: list[Any] = fields.getall(name)
        result[name] = values[0] if len(values) == 1 else values
    return result


@overload
def read_validated_body(event: H3Event, validator: type[T]) -> T: ...
@overload
def read_validated_body(event: H3Event, validator: Callable[[Any], T]) -> T: ...
def read_validated_body(event: H3Event, validator: Any) -> Any:
    """The request body, parsed and validated.

    A form body (urlencoded or multipart) becomes a dict; anything else is
    read as JSON (malformed JSON is a 400 before the validator runs).
    """
    ctype = event.headers.get("content-type", "").split(";")[0].strip().lower()
    data = _as_dict(event.read_form()) if ctype in _FORMS else event.read_json()
    return _validate(data, validator)


@overload
def get_validated_query(event: H3Event, validator: type[T]) -> T: ...
@overload
def get_validated_query(event: H3Event, validator: Callable[[Any], T]) -> T: ...
def get_validated_query(event: H3Event, validator: Any) -> Any:
    """The query parameters as a dict (repeated names as lists), validated."""
    return _validate(_as_dict(event.query), validator)
