"""Building blocks every part of the OpenAPI document uses (`openapi.py` merges the parts)."""

from __future__ import annotations

from typing import Any

from helios.dag.model import DNS1123_LABEL

NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL}
TEMPLATE = {"name": "name", "in": "path", "required": True, "schema": NAME,
            "description": "The stored DAG's name"}


def problem(description: str) -> dict[str, Any]:
    """A response documented as problem+json."""
    return {"description": description, "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def json_response(description: str, ref: str) -> dict[str, Any]:
    """A JSON response whose body is the named component schema."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}
