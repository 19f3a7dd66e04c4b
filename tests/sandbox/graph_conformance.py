"""Check Graph emulator responses against the project's stripped copy of the OpenAPI subset.

Handles the generator quirks listed in the specs README: `additionalProperties` is removed
recursively before validating, and unknown keys are rejected by walking each object schema's
`allOf` chain and collecting declared property names (annotations `@odata.*`, `@removed`
allowed). Schemas that declare no properties at all (open types such as resourceData) accept
any keys. Derived types Graph returns through a base-typed collection are allowed their
own members (fileAttachment under attachment).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource

SPEC_PATH = Path(__file__).resolve().parents[1] / "specs" / "graph-v1.0-subset.json"
DERIVED_MEMBERS = {  # members of derived types not in the subset's base schemas
    "microsoft.graph.attachment": {"contentBytes", "contentId", "contentLocation"},
}


class NonConformance(AssertionError):
    pass


def _strip_additional(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_additional(v) for k, v in node.items() if k != "additionalProperties"}
    if isinstance(node, list):
        return [_strip_additional(v) for v in node]
    return node


@functools.cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@functools.cache
def _clean_spec() -> dict[str, Any]:
    return _strip_additional(copy.deepcopy(spec()))


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in spec()["paths"]:
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(template)) + "$"
        out.append((re.compile(rx), template))
    # literal segments (delta, delta()) must win over {id} templates
    out.sort(key=lambda p: p[1].count("{"))
    return out


def match_path(url: str) -> str | None:
    path = unquote(urlsplit(url).path)
    if path.startswith("/v1.0"):
        path = path[5:]
    for rx, template in _templates():
        if rx.match(path):
            return template
    return None


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        target: Any = _clean_spec()
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_schema(method: str, url: str, status: int) -> dict[str, Any] | None:
    template = match_path(url)
    if template is None:
        raise NonConformance(f"{method} {url}: no path in the OpenAPI subset")
    item = _clean_spec()["paths"][template]
    if "x-subset-alias-of" in spec()["paths"][template]:
        item = {**_clean_spec()["paths"][spec()["paths"][template]["x-subset-alias-of"]],
                **{k: v for k, v in item.items() if k != "x-subset-alias-of"}}
    op = item.get(method.lower())
    if op is None:
        raise NonConformance(f"{method} {template}: method not in the OpenAPI subset")
    responses = op["responses"]
    key = str(status) if str(status) in responses else (
        f"{str(status)[0]}XX" if f"{str(status)[0]}XX" in responses else "default")
    if status >= 400:
        key = str(status) if str(status) in responses else "default"
    resp = _resolve(responses.get(key, {}))
    content = resp.get("content", {}).get("application/json")
    return content["schema"] if content else None


def _declared(schema: dict[str, Any]) -> tuple[set[str], dict[str, dict[str, Any]], str | None]:
    """Property names (and their schemas) declared along an allOf chain."""
    names: set[str] = set()
    props: dict[str, dict[str, Any]] = {}
    name = None
    stack = [schema]
    while stack:
        node = stack.pop()
        if "$ref" in node:
            name = name or node["$ref"].rsplit("/", 1)[-1]
            stack.append(_resolve(node))
            continue
        for k, v in node.get("properties", {}).items():
            names.add(k)
            props[k] = v
        stack.extend(node.get("allOf", []))
    if name in DERIVED_MEMBERS:
        names |= DERIVED_MEMBERS[name]
    return names, props, name


def _unknown_keys(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    problems: list[str] = []
    if isinstance(value, list):
        resolved = _resolve(schema)
        items = resolved.get("items")
        if resolved.get("type") == "array" and items:
            for i, v in enumerate(value):
                problems += _unknown_keys(items, v, f"{where}[{i}]")
        return problems
    if not isinstance(value, dict):
        return problems
    names, props, _ = _declared(schema)
    for alt in ("anyOf", "oneOf"):
        for sub in _resolve(schema).get(alt, []):
            n2, p2, _ = _declared(sub)
            names |= n2
            props.update(p2)
    if not names:
        return problems  # open type
    for key, v in value.items():
        if key.startswith("@"):
            continue
        if key not in names:
            problems.append(f"{where}.{key}: not declared by the schema")
        elif key in props:
            problems += _unknown_keys(props[key], v, f"{where}.{key}")
    return problems


def assert_conforms(method: str, url: str, status: int, body: Any) -> None:
    """Raise NonConformance when `body` does not match the subset's response schema."""
    schema = response_schema(method, url, status)
    if schema is None:
        if body not in (None, b"", ""):
            raise NonConformance(f"{method} {url} -> {status}: expected no body")
        return
    registry = Registry().with_resource("urn:graph", Resource.opaque(_clean_spec()))
    full = {**schema}
    validator = OAS30Validator(
        _rebase(full), registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        e: ValidationError = errors[0]
        raise NonConformance(f"{method} {url} -> {status}: {e.message} at "
                             f"{'/'.join(map(str, e.path))}")
    extra = _unknown_keys(schema, body, "$")
    if extra:
        raise NonConformance(f"{method} {url} -> {status}: " + "; ".join(extra[:5]))


def _rebase(node: Any) -> Any:
    """Point local refs at the registered document."""
    if isinstance(node, dict):
        return {k: (("urn:graph" + v) if k == "$ref" and v.startswith("#") else _rebase(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


def conformance_hook(response: Any) -> None:
    """httpx response event hook: every Graph response a test sees must conform."""
    request = response.request
    path = urlsplit(str(request.url)).path
    if not path.startswith("/v1.0/"):
        return
    response.read()
    body = response.json() if response.content and "json" in response.headers.get(
        "content-type", "") else None
    if path.endswith("/$batch"):
        if response.status_code == 200:
            sent = json.loads(request.content or b"{}")
            by_id = {str(r["id"]): r for r in sent.get("requests", [])}
            for part in body["responses"]:
                inner = by_id[part["id"]]
                url = inner["url"] if inner["url"].startswith("/") else "/" + inner["url"]
                if part["status"] == 424:
                    continue
                assert_conforms(inner["method"], "/v1.0" + url, part["status"],
                                part.get("body"))
        return
    assert_conforms(request.method, str(request.url), response.status_code, body)
