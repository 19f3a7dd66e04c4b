"""Check the requests our Graph client sends against the project's copy of the OpenAPI subset.

Built on the response validator (tests/sandbox/graph_conformance.py): same path matching,
same quirk-free spec, same allOf walk to reject unknown keys. What is added here is the
request side: the method must exist for the path, query options must be declared by the
operation (state tokens only where the service issues them), required options present
(except on a delta follow-up, which carries only its token), `$select` names declared by the
returned type, and the JSON body valid against the requestBody schema with action parameters
accepted in camelCase. JSON `$batch` is not in the OpenAPI: its envelope is checked against
learn.microsoft.com/graph/json-batching and every inner request is checked like a top-level one.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
from openapi_schema_validator import OAS30WriteValidator
from referencing import Registry, Resource

from tests.sandbox.graph_conformance import (
    NonConformance,
    _clean_spec,
    _declared,
    _rebase,
    _resolve,
    _unknown_keys,
    match_path,
    spec,
)

VERSION = "/v1.0"
BATCH_LIMIT = 20
BATCH_ITEM_KEYS = {"id", "method", "url", "headers", "body", "dependsOn"}
HTTP_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}
STATE_TOKENS = ("$deltatoken", "$skiptoken")

__all__ = ["NonConformance", "assert_request_conforms", "request_problems"]


def _operation(method: str, template: str) -> dict[str, Any] | None:
    """The operation for a template, an alias path falling back on the path it aliases."""
    raw = spec()["paths"][template]
    item = _clean_spec()["paths"][template]
    if "x-subset-alias-of" in raw:
        item = {**_clean_spec()["paths"][raw["x-subset-alias-of"]], **item}
    return item.get(method.lower())


def _parameters(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in (_resolve(x) for x in op.get("parameters", []))}


def _is_delta(template: str) -> bool:
    return template.rsplit("/", 1)[-1] in ("delta", "delta()", "microsoft.graph.delta()")


def _is_collection_get(op: dict[str, Any]) -> bool:
    return "$top" in _parameters(op)


def _param_value_problems(name: str, param: dict[str, Any], raw: str) -> list[str]:
    schema = param.get("schema", {})
    value: Any = raw
    kind = schema.get("type")
    try:
        if kind == "integer":
            value = int(raw)
        elif kind == "boolean":
            if raw not in ("true", "false"):
                return [f"query {name}={raw!r}: not a boolean"]
            value = raw == "true"
        elif kind == "array":
            value = [v.strip() for v in raw.split(",")]
    except ValueError:
        return [f"query {name}={raw!r}: not an {kind}"]
    errors = list(OAS30WriteValidator(schema).iter_errors(value))
    return [f"query {name}={raw!r}: {e.message}" for e in errors[:1]]


def _returned_item_names(op: dict[str, Any]) -> set[str] | None:
    """Property names of what a GET returns (the items of a collection), for `$select`."""
    responses = op.get("responses", {})
    response = _resolve(responses.get("200") or responses.get("2XX") or {})
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if not schema:
        return None
    names, props, _ = _declared(schema)
    for alt in ("anyOf", "oneOf"):
        for sub in _resolve(schema).get(alt, []):
            more, more_props, _ = _declared(sub)
            names |= more
            props.update(more_props)
    value = props.get("value")
    if value is not None and _resolve(value).get("type") == "array":
        names, _, _ = _declared(_resolve(value)["items"])
    return names or None


def _query_problems(template: str, op: dict[str, Any], query: list[tuple[str, str]]
                    ) -> list[str]:
    declared = _parameters(op)
    given = {name for name, _ in query}
    problems: list[str] = []
    if len(given) != len(query):
        problems.append("a query option is repeated")
    follow_up = any(token in given for token in STATE_TOKENS)
    for name, raw in query:
        param = declared.get(name)
        if param is not None and param.get("in") == "query":
            problems += _param_value_problems(name, param, raw)
            if name == "$select":
                known = _returned_item_names(op)
                unknown = sorted({s.strip() for s in raw.split(",")} - (known or set()))
                if known is not None and unknown:
                    problems.append(f"$select {unknown}: not properties of the returned type")
        elif name == "$deltatoken" and _is_delta(template):
            pass
        elif name == "$skiptoken" and (_is_delta(template) or _is_collection_get(op)):
            pass
        else:
            problems.append(f"query option {name!r} is not declared by {template}")
    for name, param in declared.items():
        if param.get("in") == "query" and param.get("required") and name not in given:
            if follow_up and _is_delta(template):
                continue  # a delta follow-up carries only its state token (README quirk)
            problems.append(f"required query option {name!r} missing")
    return problems


def _body_schema(op: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    body = op.get("requestBody")
    if body is None:
        return None, False
    body = _resolve(body)
    schema = body.get("content", {}).get("application/json", {}).get("schema")
    return schema, bool(body.get("required"))


def _camel_to_declared(schema: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Action parameters are PascalCase in the slices, camelCase on the wire: both accepted."""
    names, _, _ = _declared(schema)
    out: dict[str, Any] = {}
    for key, value in body.items():
        pascal = key[:1].upper() + key[1:]
        out[pascal if key not in names and pascal in names else key] = value
    return out


def _body_problems(op: dict[str, Any], body: Any, has_body: bool) -> list[str]:
    schema, required = _body_schema(op)
    if schema is None:
        return ["the operation takes no request body"] if has_body else []
    if not has_body:
        return ["the operation requires a request body"] if required else []
    if op.get("x-ms-docs-operation-type") == "action" and isinstance(body, dict):
        body = _camel_to_declared(schema, body)
    registry = Registry().with_resource("urn:graph", Resource.opaque(_clean_spec()))
    validator = OAS30WriteValidator(_rebase(schema), registry=registry)
    problems = [f"body {'/'.join(map(str, e.path)) or '$'}: {e.message}"
                for e in sorted(validator.iter_errors(body), key=lambda e: list(e.path))]
    return problems + [f"body {p}" for p in _unknown_keys(schema, body, "$")]


def request_problems(method: str, url: str, body: Any = None, *, has_body: bool | None = None,
                     headers: dict[str, str] | None = None, inner: bool = False) -> list[str]:
    """Everything wrong with one Graph request; `url` is absolute, or relative inside $batch."""
    method = method.upper()
    parts = urlsplit(url)
    path = unquote(parts.path)
    has_body = body is not None if has_body is None else has_body
    prefix = f"{method} {url}: "
    if inner:
        if not path.startswith("/") or parts.scheme or path.startswith(VERSION + "/"):
            return [prefix + "a $batch url must be relative to the version and start with '/'"]
        path = VERSION + path
    elif not path.startswith(VERSION + "/"):
        return [prefix + f"not under {VERSION}/"]
    if path == VERSION + "/$batch":
        if inner:
            return [prefix + "$batch cannot be nested"]
        return [prefix + p for p in batch_problems(method, body, headers or {})]
    template = match_path(path)
    if template is None:
        return [prefix + "no path in the OpenAPI subset"]
    op = _operation(method, template)
    if op is None:
        return [prefix + f"{method} not declared for {template}"]
    query = parse_qsl(parts.query, keep_blank_values=True)
    problems = _query_problems(template, op, query) + _body_problems(op, body, has_body)
    if has_body and headers is not None:
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if not content_type.startswith("application/json"):
            problems.append(f"body sent as {content_type!r}, not application/json")
    return [prefix + p for p in problems]


def batch_problems(method: str, body: Any, headers: dict[str, str]) -> list[str]:
    """The JSON batching envelope (json-batching), then each inner request."""
    if method != "POST":
        return ["$batch is POST only"]
    if not isinstance(body, dict) or set(body) != {"requests"} or \
            not isinstance(body["requests"], list):
        return ['$batch body must be {"requests": [...]}']
    requests = body["requests"]
    problems: list[str] = []
    if not 1 <= len(requests) <= BATCH_LIMIT:
        problems.append(f"$batch holds {len(requests)} requests (1..{BATCH_LIMIT} allowed)")
    ids = [r.get("id") for r in requests if isinstance(r, dict)]
    if len(set(map(str, ids))) != len(ids):
        problems.append("$batch request ids are not unique")
    for n, item in enumerate(requests):
        where = f"requests[{n}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: not an object")
            continue
        if extra := sorted(set(item) - BATCH_ITEM_KEYS):
            problems.append(f"{where}: unknown keys {extra}")
        if not isinstance(item.get("id"), str) or not item.get("id"):
            problems.append(f"{where}: id must be a non-empty string")
        if str(item.get("method", "")).upper() not in HTTP_METHODS:
            problems.append(f"{where}: method {item.get('method')!r}")
            continue
        if not isinstance(item.get("url"), str):
            problems.append(f"{where}: url must be a string")
            continue
        inner_headers = item.get("headers")
        if inner_headers is not None and not isinstance(inner_headers, dict):
            problems.append(f"{where}: headers must be an object")
            inner_headers = None
        has_body = "body" in item
        if has_body and not inner_headers:
            problems.append(f"{where}: headers are required when a body is present")
        for dep in item.get("dependsOn") or ():
            if dep not in ids or dep == item.get("id"):
                problems.append(f"{where}: dependsOn {dep!r} is not another request's id")
        problems += [f"{where} {p}" for p in request_problems(
            item["method"], item["url"], item.get("body"), has_body=has_body,
            headers=inner_headers or {} if has_body else None, inner=True)]
    return problems


def httpx_request_problems(request: httpx.Request) -> list[str]:
    content = request.content
    body = json.loads(content) if content else None
    return request_problems(request.method, str(request.url), body, has_body=bool(content),
                            headers=dict(request.headers))


def assert_request_conforms(request: httpx.Request) -> None:
    """Raise NonConformance listing every problem of an outgoing Graph request."""
    problems = httpx_request_problems(request)
    if problems:
        raise NonConformance("; ".join(problems))
