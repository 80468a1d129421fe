"""The body of `POST /templates/{name}/runs` and `POST /dags/{id}/resubmit`: exactly what
its published schema allows (schemathesis' negative-data check sends the rest)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.api.templates import RunRequest


@pytest.mark.parametrize("body", [{}, {"version": 2}, {"version": 3.0}, {"useCache": False},
                                  {"params": {"n": 5, "tags": ["a"]}}])
def test_what_the_schema_allows_is_taken(body: dict[str, Any]) -> None:
    RunRequest.model_validate(body)


@pytest.mark.parametrize("body", [{"version": None}, {"useCache": None}, {"version": "1"},
                                  {"version": True}, {"version": 0}, {"version": 1.5},
                                  {"useCache": "true"}, {"extra": 1}])
def test_what_the_schema_refuses_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RunRequest.model_validate(body)
