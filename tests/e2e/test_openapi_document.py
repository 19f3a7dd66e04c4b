"""The OpenAPI document: current in the repo, served without auth, and listing exactly the
HTTP routes of function_app.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.app import FunctionHost

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_committed_document_is_current() -> None:
    from shared.api.openapi import render

    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == render(), "run: python -m shared.api.openapi > docs/openapi.json"


def _routes(host: FunctionHost) -> set[tuple[str, str]]:
    out = set()
    for function in host.functions.values():
        trigger = function.get_trigger()
        if getattr(trigger, "route", None) is None:
            continue
        for method in trigger.methods or []:
            name = getattr(method, "value", method)
            out.add((f"/api/{trigger.route}", str(name).lower()))
    return out


async def test_every_http_route_is_documented_and_vice_versa(app_host: FunctionHost) -> None:
    from shared.api.openapi import build_document

    documented = {(path, method) for path, item in build_document()["paths"].items()
                  for method in item}
    assert _routes(app_host) == documented


async def test_document_is_served_without_auth(app_host: FunctionHost) -> None:
    response = await app_host.http("openapi_document", "GET", "openapi.json")
    assert response.status == 200
    served: dict[str, Any] = response.json()
    assert served["openapi"] == "3.1.0"
    assert served == json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served["components"]["securitySchemes"]["entra"]["scheme"] == "bearer"
