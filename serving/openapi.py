"""The OpenAPI document as the service really behaves: the served version's record schema and the error shape.

BentoML documents `POST /predict` from the service's generic types; the served version's record fields, their
bounds and the record limit are known only once a version loads (and change with it), so the document is
completed per request from the version being served.
"""

from __future__ import annotations

from typing import Any

from serving.errors import ERROR_SCHEMA
from serving.model import ServedModel

ERRORS = {
    "400": "The body is not valid JSON or does not match the record schema; `location` names the field.",
    "401": "The bearer token is missing or wrong.",
    "408": "The body did not arrive in time.",
    "413": "The body or the number of records is over the limit; split the batch.",
    "415": "The body is not sent as `application/json`.",
    "422": "The model cannot score a record although it matches the schema; `location` names the record.",
    "500": "The served model failed; the server log has the traceback.",
    "503": "No version is loaded yet; `GET /model` says why.",
}


def document(spec: dict[str, Any], model: ServedModel | None, token_required: bool) -> dict[str, Any]:
    """BentoML's document of the service, with `POST /predict` described for `model` (the version served now)."""
    spec["openapi"] = "3.1.0"  # the schemas are pydantic's JSON Schema 2020-12 (`"type": "null"`), as 3.1 defines
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    operation = spec["paths"]["/predict"]["post"]
    if model is not None:
        body = model.body.json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        operation["description"] += f" Records as version {model.version} of {model.name} takes them."
    for unused in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR_SCHEMA
    responses = {code: response for code, response in operation["responses"].items() if code.startswith("2")}
    for code, description in ERRORS.items():
        if code != "401" or token_required:
            responses[code] = {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
    operation["responses"] = responses
    if token_required:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        operation["security"] = [{"bearer": []}]
    return spec
