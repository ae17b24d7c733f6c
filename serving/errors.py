"""One error shape for every 4xx and 5xx answer of the service, and one log line per refused request.

`{"status": 400, "message": "records[0].age: Input should be a valid number", "location": "records[0].age",
"errors": [{"location": ..., "message": ...}]}`: `message` says what is wrong and what to do, `location` points at
the first failing part of the request (a field, a header, the body), `errors` lists every problem found.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

log = logging.getLogger("nexus.serving")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "message", "location", "errors"],
    "properties": {
        "status": {"type": "integer", "description": "The HTTP status, repeated for clients that log bodies only."},
        "message": {"type": "string", "description": "What is wrong and what to do about it."},
        "location": {
            "type": ["string", "null"],
            "description": "The first failing part of the request: a field (records[0].age), a header, the body.",
        },
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "message"],
                "properties": {"location": {"type": ["string", "null"]}, "message": {"type": "string"}},
            },
        },
    },
}


class ApiError(Exception):
    """A request the service answers with `status` instead of predictions."""

    def __init__(
        self, status: int, message: str, location: str | None = None, errors: Sequence[dict] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.location = status, message, location
        self.errors = list(errors) if errors else [{"location": location, "message": message}]

    def body(self) -> bytes:
        return to_json(
            {"status": self.status, "message": self.message, "location": self.location, "errors": self.errors}
        )

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.status == HTTPStatus.UNAUTHORIZED:
            headers["www-authenticate"] = 'Bearer realm="nexus"'
        elif self.status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers["allow"] = "POST"
        return headers

    def log(self, route: str, model_version: str | None = None) -> None:
        """4xx as one INFO line (the client's mistake, not the service's), 503 (no model yet) as a WARNING, other
        5xx as an ERROR with the traceback of its cause."""
        fields = {"status": int(self.status), "model_version": model_version, "route": route}
        if self.status < 500:
            log.info("%s %d: %s", route, self.status, self.message, extra=fields)
        elif self.status == HTTPStatus.SERVICE_UNAVAILABLE:
            log.warning("%s %d: %s", route, self.status, self.message, extra=fields)
        else:
            log.error("%s %d: %s", route, self.status, self.message, exc_info=self.__cause__, extra=fields)


def invalid_body(exc: ValidationError, max_records: int) -> ApiError:
    """A request body that does not match the served version's record schema: 413 past the record limit, else 400."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        found = {"location": location(error["loc"]), "message": _message(error), "type": error["type"]}
        if found not in errors:
            errors.append(found)
    if any(e["type"] == "too_long" and e["location"] == "records" for e in errors):
        return ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"records: more than {max_records} records in one request; split the batch",
            "records",
        )
    for error in errors:
        del error["type"]
    first = errors[0]
    others = len(errors) - 1
    more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
    return ApiError(HTTPStatus.BAD_REQUEST, f"{first['location']}: {first['message']}{more}", first["location"], errors)


def _message(error: dict[str, Any]) -> str:
    bound = error.get("ctx", {})
    if error["type"] == "less_than_equal":
        return f"Input should be at most {bound['le']:.7g}, the largest value the model can compute with"
    if error["type"] == "greater_than_equal":
        return f"Input should be at least {bound['ge']:.7g}, the smallest value the model can compute with"
    return error["msg"]


def location(loc: Sequence[str | int]) -> str:
    """pydantic's `("records", 0, "age")` as `records[0].age`; the body itself is `body`. Parts past the record's
    field are the branches of a union (`customer_id` is an int or a string) and say nothing more to the client."""
    out = ""
    for part in loc[:3]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"
