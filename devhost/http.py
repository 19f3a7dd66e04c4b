"""HTTP triggers: a Starlette app that routes like the Functions host and speaks func.HttpRequest.

Function keys are not checked, matching Core Tools (`func start` ignores auth levels locally).
A method the route does not allow is a 404, as on the real host.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import azure.functions as func
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .functions import HTTP_TRIGGER, FunctionSpec, invoke, log, log_invocation
from .routing import RouteEntry, Router, RouteTemplate

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def http_route(spec: FunctionSpec) -> str:
    """The route template; the decorator defaults it to the function name."""
    return str(spec.trigger.get("route") or spec.name)


def http_methods(spec: FunctionSpec) -> frozenset[str] | None:
    """Allowed methods, or None for all (a trigger without `methods` accepts any)."""
    methods = spec.trigger.get("methods")
    if not methods:
        return None
    return frozenset(str(getattr(m, "value", m)).upper() for m in methods)


def build_router(specs: Iterable[FunctionSpec], route_prefix: str) -> Router:
    return Router(
        RouteEntry(RouteTemplate(http_route(s), route_prefix), http_methods(s), s)
        for s in specs
        if s.trigger_type == HTTP_TRIGGER
    )


async def to_func_request(request: Request, route_params: dict[str, str]) -> func.HttpRequest:
    """Build the request object the worker would: repeated query keys/headers are comma-joined."""
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        params[key] = f"{params[key]},{value}" if key in params else value
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return func.HttpRequest(
        method=request.method.upper(),
        url=str(request.url),
        headers=headers,
        params=params,
        route_params=route_params,
        body=await request.body(),
    )


def to_starlette_response(value: Any) -> Response:
    """Map what the function returned to an HTTP response, like the worker's converter."""
    if value is None:
        return Response(status_code=204)
    if isinstance(value, bytes | bytearray):
        value = func.HttpResponse(bytes(value), mimetype="application/octet-stream")
    elif isinstance(value, str):
        value = func.HttpResponse(value)
    if not isinstance(value, func.HttpResponse):
        raise TypeError(
            "an HTTP function must return azure.functions.HttpResponse, str or bytes, "
            f"not {type(value).__name__}"
        )
    body = value.get_body()
    response = Response(content=body, status_code=value.status_code)
    has_content_type = False
    for key, header_value in value.headers.items():
        lowered = key.lower()
        if lowered == "content-length":
            continue  # Starlette computes it from the body
        has_content_type = has_content_type or lowered == "content-type"
        response.headers.append(key, str(header_value))  # keeps repeats such as Set-Cookie
    if not has_content_type and body:
        mimetype = value.mimetype or "text/plain"
        if mimetype.startswith("text/") or mimetype == "application/json":
            mimetype = f"{mimetype}; charset={value.charset or 'utf-8'}"
        response.headers["content-type"] = mimetype
    return response


def _http_output_name(spec: FunctionSpec) -> str | None:
    for binding in spec.bindings:
        if binding.get("type") == "http" and binding is not spec.trigger:
            return str(binding.get("name"))
    return None


async def handle(spec: FunctionSpec, request: Request, route_params: dict[str, str]) -> Response:
    """Invoke one HTTP function; a raised exception or unusable return value is a bare 500."""
    outcome = await invoke(spec, await to_func_request(request, route_params))
    response: Response | None = None
    if outcome.succeeded:
        value = outcome.result
        out_name = _http_output_name(spec)
        if out_name and out_name != "$return":
            value = outcome.outputs.get(out_name)
        try:
            response = to_starlette_response(value)
        except (TypeError, ValueError) as exc:
            log.error("Function 'Functions.%s' returned an unusable response: %s", spec.name, exc)
    if response is None:
        response = Response(status_code=500)
    # The path, not the query string: query strings can carry function keys.
    log_invocation(spec, outcome, f"{request.method} {request.url.path} -> {response.status_code}")
    return response


def build_http_app(router: Router) -> Starlette:
    """One catch-all Starlette route; the router decides which function (if any) runs."""

    async def dispatch(request: Request) -> Response:
        found = router.match(request.method, request.url.path)
        if found is None:
            log.info("No function for %s %s -> 404", request.method, request.url.path)
            return Response(status_code=404)
        spec, route_params = found
        return await handle(spec, request, dict(route_params))

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=ALL_METHODS)])


def describe_http(spec: FunctionSpec, base_url: str, route_prefix: str) -> str:
    """The line Core Tools prints for each HTTP function at startup."""
    methods = http_methods(spec)
    shown = ",".join(sorted(methods)) if methods else "ALL"
    path = "/".join(p for p in (route_prefix, http_route(spec).strip("/")) if p)
    auth = spec.trigger.get("authLevel")
    return f"{spec.name}: [{shown}] {base_url}/{path} (authLevel={auth}, not enforced locally)"
