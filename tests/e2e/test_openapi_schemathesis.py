"""Schemathesis against /api/openapi.json: generated requests (with a valid token) to every
operation, through function_app.py; no 5xx, and every response matches the document."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core import NotSet

from tests.e2e.test_addin_support import ALEX, deliver
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 15


def _cases(operation: Any) -> list[Any]:
    """Generate cases without running them (hypothesis is sync; the app is async)."""
    found: list[Any] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    def collect(case: Any) -> None:
        found.append(case)

    collect()
    return found


async def test_schemathesis_no_5xx_and_responses_conform(app_host: FunctionHost) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    served = await app_host.http("openapi_document", "GET", "openapi.json")
    schema = schemathesis.openapi.from_dict(served.json())
    functions = {op["operationId"]: (path, method)
                 for path, item in served.json()["paths"].items()
                 for method, op in item.items()}
    token = app_host.sandbox.user_token(ALEX, scopes=["access_as_user"], roles=["Sync.Admin"])
    deliver(app_host, [ALEX])
    started = time.monotonic()
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        function = operation.definition.raw["operationId"]
        assert function in functions
        for case in _cases(operation):
            path = case.formatted_path
            headers = {k: str(v) for k, v in (case.headers or {}).items()}
            body = None if isinstance(case.body, NotSet) else case.body
            raw = json.dumps(body).encode() if body is not None and not isinstance(
                body, bytes) else body
            try:
                response = await app_host.http(
                    function, case.method, path.removeprefix("/api/"), raw=raw or b"",
                    token=token, headers=headers,
                    params={k: str(v) for k, v in (case.query or {}).items()},
                    route={k: str(v) for k, v in (case.path_parameters or {}).items()})
            except Exception as error:  # noqa: BLE001 - the host would answer 500
                failures.append(f"{function} raised {type(error).__name__}: {error}"[:400])
                continue
            finally:
                calls += 1
            request = httpx.Request(case.method, f"http://localhost:7071{path}",
                                    headers=headers, content=raw or b"")
            http_response = httpx.Response(response.status, headers=response.headers,
                                           content=response.body, request=request)
            http_response.elapsed = timedelta(0)
            try:
                case.validate_response(http_response, checks=[
                    not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance])
            except Exception as error:  # noqa: BLE001 - collect every failure
                failures.append(f"{function} {response.status}: {str(error)[:400]}")
    elapsed = time.monotonic() - started
    assert calls > 100
    assert not failures, "\n".join(failures[:10])
    assert elapsed < 120
