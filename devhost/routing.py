"""ASP.NET-style route templates, as the Functions host matches them.

Supports literals (case-insensitive), `{name}`, `{name?}`, `{name=default}`, `{name:constraint}`
chains and `{*rest}` / `{**rest}` catch-alls, and orders routes by ASP.NET precedence so a
literal segment wins over a parameter and a catch-all comes last.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .config import DevHostError

_CONSTRAINT = re.compile(r"([A-Za-z]+)(?:\((.*)\))?$")


def _is_int(value: str, bits: int) -> bool:
    if not re.fullmatch(r"-?\d+", value):
        return False
    return -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1)


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value.strip("{}()"))
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _constraint(name: str, arg: str | None) -> Callable[[str], bool]:
    """Build a checker for one inline constraint; unknown ones are refused loudly."""
    lowered = name.lower()
    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _is_int(v, 32),
        "long": lambda v: _is_int(v, 64),
        "guid": _is_guid,
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "bool": lambda v: v.lower() in ("true", "false"),
        "datetime": _is_datetime,
        "decimal": _is_float,
        "double": _is_float,
        "float": _is_float,
        "required": lambda v: v != "",
    }
    if lowered in simple:
        return simple[lowered]
    args = [a.strip() for a in (arg or "").split(",")] if arg is not None else []
    try:
        if lowered == "minlength":
            n = int(args[0])
            return lambda v: len(v) >= n
        if lowered == "maxlength":
            n = int(args[0])
            return lambda v: len(v) <= n
        if lowered == "length":
            lo = int(args[0])
            hi = int(args[1]) if len(args) > 1 else lo
            return lambda v: lo <= len(v) <= hi
        if lowered == "min":
            n = int(args[0])
            return lambda v: _is_int(v, 64) and int(v) >= n
        if lowered == "max":
            n = int(args[0])
            return lambda v: _is_int(v, 64) and int(v) <= n
        if lowered == "range":
            lo, hi = int(args[0]), int(args[1])
            return lambda v: _is_int(v, 64) and lo <= int(v) <= hi
        if lowered == "regex":
            pattern = re.compile(arg or "", re.IGNORECASE)
            return lambda v: pattern.search(v) is not None
    except (IndexError, ValueError, re.error) as exc:
        raise DevHostError(f"route constraint '{name}({arg})' is malformed: {exc}") from None
    raise DevHostError(f"route constraint '{name}' is not supported by devhost")


@dataclass
class _Param:
    name: str
    group: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    checks: list[Callable[[str], bool]] = field(default_factory=list)


def _tokenize(segment: str, template: str) -> list[tuple[str, str]]:
    """Split a segment into literals and {parameters}; `{{` and `}}` are escaped braces."""
    parts: list[tuple[str, str]] = []
    literal, i = "", 0
    while i < len(segment):
        ch = segment[i]
        if ch in "{}" and segment[i : i + 2] == ch * 2:
            literal += ch
            i += 2
            continue
        if ch == "}":
            raise DevHostError(f"route '{template}' has an unmatched '}}'")
        if ch != "{":
            literal += ch
            i += 1
            continue
        if literal:
            parts.append(("literal", literal))
            literal = ""
        body, i = "", i + 1
        while True:
            if i >= len(segment):
                raise DevHostError(f"route '{template}' has an unclosed '{{'")
            if segment[i] in "{}" and segment[i : i + 2] == segment[i] * 2:
                body += segment[i]
                i += 2
            elif segment[i] == "}":
                i += 1
                break
            else:
                body += segment[i]
                i += 1
        parts.append(("param", body))
    if literal:
        parts.append(("literal", literal))
    return parts


def _split_constraints(body: str) -> list[str]:
    """Split `name:c1:regex(a:b)` on colons that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


class RouteTemplate:
    """One compiled route template: match a decoded path, yield its route values."""

    def __init__(self, template: str, prefix: str = "") -> None:
        self.template = template.strip().strip("/")
        full = "/".join(p for p in (prefix.strip("/"), self.template) if p)
        self.params: list[_Param] = []
        segments = full.split("/") if full else []
        pattern = ""
        precedence: list[int] = []
        for index, segment in enumerate(segments):
            parts = _tokenize(segment, self.template)
            if len(parts) == 1 and parts[0][0] == "param":
                param = self._param(parts[0][1], index, len(segments))
                value = ".*" if param.catch_all else "[^/]+"
                if param.optional:
                    pattern += f"(?:/(?P<{param.group}>{value}))?"
                    precedence.append(5 if param.catch_all else 4)
                else:
                    pattern += f"/(?P<{param.group}>{value})"
                    precedence.append(2 if param.checks else 3)
                continue
            pattern += "/"
            params = []
            for kind, text in parts:
                if kind == "literal":
                    pattern += re.escape(text)
                    continue
                param = self._param(text, index, len(segments))
                params.append(param)
                pattern += f"(?P<{param.group}>{'.*' if param.catch_all else '[^/]+?'})"
            if not params:
                precedence.append(1)
            else:
                precedence.append(2 if all(p.checks for p in params) else 3)
        self._regex = re.compile(f"^{pattern or '/'}/?$", re.IGNORECASE)
        # Sort key: by segment precedence, then longer templates first.
        self.sort_key = (precedence, -len(segments))

    def _param(self, body: str, index: int, count: int) -> _Param:
        body = body.strip()
        catch_all = body.startswith("*")
        body = body.lstrip("*")
        name_part, *constraint_parts = _split_constraints(body)
        optional = name_part.endswith("?")
        name_part = name_part.rstrip("?")
        default = None
        if "=" in name_part:
            name_part, default = name_part.split("=", 1)
            optional = True
        if not name_part:
            raise DevHostError(f"route '{self.template}' has an unnamed parameter")
        if catch_all:
            if index != count - 1:
                raise DevHostError(f"route '{self.template}': a catch-all must be the last segment")
            optional = True
        checks = []
        for part in constraint_parts:
            m = _CONSTRAINT.match(part.strip())
            if not m:
                raise DevHostError(f"route '{self.template}': bad constraint '{part}'")
            if m.group(1).lower() == "optional":
                optional = True
                continue
            checks.append(_constraint(m.group(1), m.group(2)))
        param = _Param(
            name=name_part,
            group=f"p{len(self.params)}",
            optional=optional,
            catch_all=catch_all,
            default=default,
            checks=checks,
        )
        self.params.append(param)
        return param

    def match(self, path: str) -> dict[str, str] | None:
        """Return the route values if path matches (constraints included), else None."""
        m = self._regex.match(path if path.startswith("/") else "/" + path)
        if not m:
            return None
        values: dict[str, str] = {}
        for param in self.params:
            value = m.group(param.group)
            if value is None or value == "":
                if not param.optional:
                    return None
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if not all(check(value) for check in param.checks):
                return None
            values[param.name] = value
        return values


@dataclass
class RouteEntry:
    template: RouteTemplate
    methods: frozenset[str] | None
    target: Any


class Router:
    """All HTTP functions' routes, tried in precedence order."""

    def __init__(self, entries: Iterable[RouteEntry] = ()) -> None:
        self._entries = sorted(entries, key=lambda e: e.template.sort_key)

    def match(self, method: str, path: str) -> tuple[Any, Mapping[str, str]] | None:
        """First route whose template and method match; the host answers 404 otherwise."""
        for entry in self._entries:
            if entry.methods is not None and method.upper() not in entry.methods:
                continue
            values = entry.template.match(path)
            if values is not None:
                return entry.target, values
        return None
