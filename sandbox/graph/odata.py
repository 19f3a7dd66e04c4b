"""The small part of OData query syntax the sync client uses: $filter, $select, $orderby.

A real parser (not regexes) so that `and`/`or`, parentheses, lambdas such as
`singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')` and
`categories/any(c:c eq 'X')` compose; unsupported syntax answers 400 as Graph does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from sandbox.graph.errors import GraphError

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?(?![\d:T-]))"
    r"|(?P<dt>\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)"
    r"|(?P<punct>[(),:])|(?P<name>[A-Za-z_@$][\w./@$]*))"
)

_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Invalid filter clause: {message}")


def _tokenize(text: str) -> list[tuple[str, Any]]:
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise _bad(f"unexpected text at {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("lit", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            n = m.group("num")
            out.append(("lit", float(n) if "." in n else int(n)))
        elif m.group("dt") is not None:
            out.append(("lit", _parse_dt(m.group("dt"))))
        elif m.group("punct") is not None:
            out.append((m.group("punct"), m.group("punct")))
        else:
            name = m.group("name")
            low = name.lower()
            if low in ("true", "false"):
                out.append(("lit", low == "true"))
            elif low == "null":
                out.append(("lit", None))
            else:
                out.append(("name", name))
    return out


def _parse_dt(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


Getter = Callable[[dict[str, Any], str], Any]
Predicate = Callable[[dict[str, Any]], bool]


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.t, self.i = tokens, 0
        self.vars: list[str] = []

    def peek(self, k: int = 0) -> tuple[str, Any] | None:
        return self.t[self.i + k] if self.i + k < len(self.t) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise _bad("unexpected end")
        if kind and tok[0] != kind:
            raise _bad(f"expected {kind}, got {tok[1]!r}")
        if value and str(tok[1]).lower() != value:
            raise _bad(f"expected {value}, got {tok[1]!r}")
        self.i += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "name" and tok[1].lower() == word

    def expr(self) -> Predicate:
        left = self.conj()
        while self.is_word("or"):
            self.take()
            right = self.conj()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def conj(self) -> Predicate:
        left = self.unary()
        while self.is_word("and"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def unary(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            inner = self.unary()
            return lambda r: not inner(r)
        tok = self.peek()
        if tok and tok[0] == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        return self.comparison()

    def operand(self) -> Callable[[dict[str, Any]], Any]:
        tok = self.take()
        if tok[0] == "lit":
            value = tok[1]
            return lambda r: value
        if tok[0] != "name":
            raise _bad(f"unexpected {tok[1]!r}")
        name: str = tok[1]
        nxt = self.peek()
        if nxt and nxt[0] == "(" and name.lower() in ("contains", "startswith", "endswith"):
            raise _bad("function in operand position")
        path = name.split("/")
        return lambda r: _get_path(r, path)

    def comparison(self) -> Predicate:
        tok = self.peek()
        if tok is None or tok[0] != "name":
            raise _bad("expected a property")
        name: str = tok[1]
        low = name.lower()
        if low in ("contains", "startswith", "endswith") and (self.peek(1) or ("",))[0] == "(":
            self.take()
            self.take("(")
            a = self.operand()
            self.take(",")
            b = self.operand()
            self.take(")")
            fn = {"contains": lambda x, y: y in x, "startswith": str.startswith,
                  "endswith": str.endswith}[low]
            return lambda r: _str_fn(fn, a(r), b(r))
        segments = name.split("/")
        if segments[-1].lower() in ("any", "all") and (self.peek(1) or ("",))[0] == "(":
            self.take()
            return self.lambda_(segments[:-1], segments[-1].lower())
        left = self.operand()
        op = self.take("name")[1].lower()
        if op not in _OPS:
            raise _bad(f"unsupported operator {op!r}")
        right = self.operand()
        return lambda r: _compare(op, left(r), right(r))

    def lambda_(self, path: list[str], kind: str) -> Predicate:
        self.take("(")
        var = self.take("name")[1]
        self.take(":")
        inner = self.expr()
        self.take(")")

        def pred(r: dict[str, Any]) -> bool:
            coll = _get_path(r, path) or []
            hits = (inner({**r, var: v}) for v in coll)
            return any(hits) if kind == "any" else all(hits)
        return pred


def _get_path(record: Any, path: list[str]) -> Any:
    cur = record
    for seg in path:
        if isinstance(cur, dict):
            if seg in cur:
                cur = cur[seg]
                continue
            low = {k.lower(): v for k, v in cur.items()}
            cur = low.get(seg.lower())
        else:
            return None
    return cur


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?", v):
            return _parse_dt(v)
        return v.lower()  # Graph string comparisons are case-insensitive
    return v


def _compare(op: str, a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if a is None or b is None:
        return False
    try:
        return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
    except TypeError:
        return False


def _str_fn(fn: Callable[[str, str], bool], a: Any, b: Any) -> bool:
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return fn(a.lower(), b.lower())


def parse_filter(text: str) -> Predicate:
    """Compile a $filter into a predicate over a record dict (Graph property names)."""
    parser = _Parser(_tokenize(text))
    pred = parser.expr()
    if parser.peek() is not None:
        raise _bad(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return pred


def parse_select(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


_EXPAND_SVEP = re.compile(
    r"^\s*(singleValueExtendedProperties|multiValueExtendedProperties)"
    r"\s*(?:\(\s*\$filter\s*=\s*(?P<filter>.+)\)\s*)?$", re.I)


def parse_expand(text: str | None) -> dict[str, Predicate | None]:
    """`$expand=singleValueExtendedProperties($filter=id eq '...')` -> {name: predicate}."""
    out: dict[str, Predicate | None] = {}
    if not text:
        return out
    for part in _split_top(text):
        m = _EXPAND_SVEP.match(part)
        if m:
            name = m.group(1)
            name = name[0].lower() + name[1:]
            out[name] = parse_filter(m.group("filter")) if m.group("filter") else None
        else:
            out[part.strip()] = None
    return out


def _split_top(text: str) -> list[str]:
    depth, cur, parts = 0, "", []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_orderby(text: str | None) -> list[tuple[str, bool]]:
    """[(property, descending)]"""
    if not text:
        return []
    out = []
    for part in text.split(","):
        bits = part.strip().split()
        if not bits:
            continue
        out.append((bits[0], len(bits) > 1 and bits[1].lower() == "desc"))
    return out
