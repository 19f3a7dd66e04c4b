"""The one adapter between `azure.functions` HTTP triggers and the handlers in shared/api.

Triggers stay one line: `return await respond(req, handler)`. Everything that turns a request
into a refusal (size, JSON, validation, authentication, upstream failure) is decided here, so
every endpoint answers bad input the same way and nothing is written before validation passes.
Whatever else a handler raises becomes a problem+json 500 carrying the request id, never a
bare host error.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from shared.api.problem import PROBLEM_JSON, ApiError
from shared.errors import ErrorKind, UpstreamError
from shared.identity import AuthenticationError, AuthorizationError

log = logging.getLogger("sss.api")
M = TypeVar("M", bound=BaseModel)

# An incoming x-request-id is kept only when it is short and plain: it is logged and echoed.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_FIELD_PART_CHARS = 100  # a field named in a problem is the caller's own key: bounded


def request_id_of(headers: Any) -> str:
    """The caller's x-request-id when it is a short id of safe characters, else a new one."""
    given = (headers or {}).get("x-request-id")
    if isinstance(given, str) and _REQUEST_ID.match(given):
        return given
    return str(uuid.uuid4())


@dataclass
class ApiRequest:
    method: str
    path: str
    route: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def bearer(self) -> str | None:
        value = self.header("authorization") or ""
        return value[7:].strip() if value.lower().startswith("bearer ") else None

    def _require_body(self) -> None:
        if not self.body:
            raise ApiError(400, "Invalid request", "body: a JSON body is required", field="body")

    def model(self, model: type[M]) -> M:
        """Parse and validate the body in strict mode straight from the JSON bytes: JSON
        strings still become UUIDs, datetimes and enums, but nothing else is coerced ("yes"
        or 1 is no boolean, a number no string). pydantic-core's parser has its own depth
        limit, not Python's stack, so any body it cannot take (nesting, huge numbers, bad
        UTF-8) is a 400 `body` too. A 400 names the first field at fault."""
        self._require_body()
        try:
            return model.model_validate_json(self.body, strict=True)
        except ValidationError as error:
            raise validation_problem(error) from None

    def query_model(self, model: type[M]) -> M:
        """Query strings are text by nature: their models turn clean numbers into numbers
        themselves (see `shared.api.admin_models.QueryInt`) and are otherwise strict."""
        try:
            return model.model_validate(self.query, strict=True)
        except ValidationError as error:
            raise validation_problem(error, prefix="query") from None


@dataclass
class ApiResponse:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "application/json"
        if isinstance(self.body, bytes):  # already encoded JSON
            return self.body, "application/json"
        if isinstance(self.body, BaseModel):
            return self.body.model_dump_json(by_alias=True, exclude_none=True).encode(), \
                "application/json"
        return json.dumps(self.body, default=str).encode(), "application/json"


def _field_name(loc: tuple[Any, ...], prefix: str | None) -> str:
    parts = [str(p)[:_FIELD_PART_CHARS] for p in loc if p != "__root__"]
    name = ".".join(parts) or (prefix or "body")
    return f"{prefix}.{name}" if prefix and parts else name


def validation_problem(error: ValidationError, prefix: str | None = None) -> ApiError:
    issues = []
    for item in error.errors(include_url=False, include_input=False):
        name = _field_name(tuple(item.get("loc", ())), prefix)
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        issues.append({"field": name, "detail": message})
    first = issues[0] if issues else {"field": prefix or "body", "detail": "invalid"}
    return ApiError(400, "Invalid request", f"{first['field']}: {first['detail']}",
                    field=first["field"], errors=issues)


def upstream_problem(error: UpstreamError) -> ApiError:
    """Map a classified upstream failure to what the caller can act on."""
    if error.kind is ErrorKind.FORBIDDEN:
        return ApiError(403, "Forbidden", f"{error.service or 'upstream'} refused the action")
    if error.kind is ErrorKind.NOT_FOUND:
        return ApiError(404, "Not found", f"{error.service or 'upstream'} item was not found")
    if error.kind is ErrorKind.TRANSIENT:
        headers = {"Retry-After": str(int(error.retry_after or 5))}
        return ApiError(503, "Upstream unavailable", error.summary(), headers=headers)
    return ApiError(502, "Upstream failure", error.summary())


def from_http_request(req: func.HttpRequest, max_bytes: int) -> ApiRequest:
    body = req.get_body() or b""
    if len(body) > max_bytes:
        raise ApiError(413, "Payload too large",
                       f"body: larger than {max_bytes} bytes", field="body")
    url = req.url
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    return ApiRequest(
        method=req.method.upper(),
        path="/" + path,
        route={k: v for k, v in (req.route_params or {}).items()},
        query={k: v for k, v in (req.params or {}).items()},
        headers={k.lower(): v for k, v in (req.headers or {}).items()},
        body=body,
    )


def to_http_response(response: ApiResponse) -> func.HttpResponse:
    body, mimetype = response.encode()
    return func.HttpResponse(body=body, status_code=response.status, headers=response.headers,
                             mimetype=mimetype)


def problem_response(error: ApiError, request_id: str) -> func.HttpResponse:
    headers = {"x-request-id": request_id, **error.headers}
    return func.HttpResponse(json.dumps(error.body()), status_code=error.status,
                             headers=headers, mimetype=PROBLEM_JSON)


def internal_problem(request_id: str) -> ApiError:
    """The last resort: an answer the caller can quote (the correlation id), and no detail."""
    return ApiError(500, "Internal error",
                    f"the request failed unexpectedly; quote correlation id {request_id}",
                    extra={"correlation_id": request_id})


Handler = Callable[[ApiRequest], Awaitable[ApiResponse]]


async def respond(req: func.HttpRequest, handler: Handler, *, max_bytes: int = 65536
                  ) -> func.HttpResponse:
    """Run a handler and render its result or its refusal; log ids and outcomes only."""
    started = time.perf_counter()
    request_id = request_id_of(req.headers)
    name = getattr(handler, "__name__", "handler")
    try:
        api_request = from_http_request(req, max_bytes)
        api_request.request_id = request_id
        result = await handler(api_request)
        response = to_http_response(result)
        response.headers["x-request-id"] = request_id
        status = result.status
    except ApiError as error:
        response, status = problem_response(error, request_id), error.status
    except AuthenticationError as error:
        problem = ApiError(401, "Unauthorized", error.reason,
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        response, status = problem_response(problem, request_id), 401
    except AuthorizationError as error:
        # RFC 6750 section 3.1: a token without the scope (or app role) the call needs.
        problem = ApiError(403, "Forbidden", error.reason,
                           headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
        response, status = problem_response(problem, request_id), 403
    except UpstreamError as error:
        problem = upstream_problem(error)
        response, status = problem_response(problem, request_id), problem.status
    except Exception as error:  # noqa: BLE001 - the last resort: never a bare 500
        # The type only: an exception's text may quote the body or an address.
        log.error("http %s unhandled %s request_id=%s", name, type(error).__name__,
                  request_id)
        response, status = problem_response(internal_problem(request_id), request_id), 500
    log.info("http %s status=%s ms=%.1f request_id=%s", name, status,
             (time.perf_counter() - started) * 1000, request_id)
    return response
