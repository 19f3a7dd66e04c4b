"""A real `$filter` parser: tokenizer, recursive descent to an AST, then a Python predicate.

Covers what Dataverse's Web API accepts and the project's client uses (query-data-web-api):
eq ne gt ge lt le, and/or/not, parentheses, contains/startswith/endswith, null, guid, string
('' escapes), number, boolean and datetime literals, `_x_value` lookup columns,
`Microsoft.Dynamics.CRM.In/NotIn(PropertyName=...,PropertyValues=[...])` and `any`/`all` over a
party-list navigation. String comparisons ignore case, as Dataverse's SQL collation does.
Operands are type-checked the way the service does (a quoted GUID against a Guid column is a 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.dataverse.errors import UNKNOWN_PROPERTY, DataverseError, unknown_property
from sandbox.dataverse.metadata import Entity

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlLfF]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[(),\[\]/:=])
    """,
    re.VERBOSE,
)
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
OP_KIND = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
           "lt": "LessThan", "le": "LessThanOrEqual"}
NUMERIC = {"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"}
QUERY_FUNCTIONS = {"in": False, "notin": True}


@dataclass
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise syntax_error(f"Syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    return tokens


def syntax_error(message: str) -> DataverseError:
    return DataverseError(400, UNKNOWN_PROPERTY, message)


# --- values ---------------------------------------------------------------------------------


def parse_datetime(value: str) -> datetime:
    """ISO 8601 (with Z, an offset, or none = UTC) to an aware datetime."""
    text = value.strip().replace("Z", "+00:00")
    if len(text) == 10:
        text += "T00:00:00+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def normalize(value: Any, edm: str) -> Any:
    """A stored/literal value in a form Python can compare for this column type."""
    if value is None:
        return None
    if edm == "Edm.String":
        return str(value).casefold()
    if edm == "Edm.Guid":
        return str(value).lower()
    if edm == "Edm.DateTimeOffset" or edm == "Edm.Date":
        return parse_datetime(value) if isinstance(value, str) else value
    if edm in NUMERIC:
        return value if isinstance(value, int | float) else float(value)
    return value


@dataclass
class Literal:
    value: Any
    kind: str  # Edm.String, Edm.Guid, Edm.DateTimeOffset, number, Edm.Boolean, null


@dataclass
class Prop:
    column: str
    edm: str
    var: str | None = None  # lambda variable, for `p/addressused`


@dataclass
class Node:
    op: str
    args: list[Any]


# --- parser ---------------------------------------------------------------------------------


class Parser:
    """Recursive descent over the tokens; resolves columns against the entity as it goes."""

    def __init__(self, text: str, entity: Entity,
                 nav_entity: Callable[[Entity, str], Entity | None]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.scopes: list[tuple[str | None, Entity]] = [(None, entity)]
        self.nav_entity = nav_entity

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise syntax_error(f"Syntax error: unexpected end of '$filter={self.text}'.")
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.next()
        if token.text != text:
            raise syntax_error(f"Syntax error at position {token.pos}: expected '{text}', "
                               f"found '{token.text}'.")

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "ident" and token.text.lower() in words

    def parse(self) -> Any:
        node = self.or_expr()
        if self.peek() is not None:
            token = self.peek()
            assert token is not None
            raise syntax_error(f"Syntax error at position {token.pos} in '{self.text}'.")
        return node

    def or_expr(self) -> Any:
        node = self.and_expr()
        while self.at_word("or"):
            self.next()
            node = Node("or", [node, self.and_expr()])
        return node

    def and_expr(self) -> Any:
        node = self.unary()
        while self.at_word("and"):
            self.next()
            node = Node("and", [node, self.unary()])
        return node

    def unary(self) -> Any:
        if self.at_word("not"):
            self.next()
            return Node("not", [self.unary()])
        return self.comparison()

    def comparison(self) -> Any:
        left = self.primary()
        if self.at_word(*COMPARISONS):
            op = self.next().text.lower()
            right = self.primary()
            check_types(left, right, op)
            return Node(op, [left, right])
        if isinstance(left, Node) or (isinstance(left, Prop) and left.edm == "Edm.Boolean"):
            return left if isinstance(left, Node) else Node("eq", [left, Literal(True, "bool")])
        raise syntax_error(f"Syntax error: '$filter={self.text}' is not a boolean expression.")

    def primary(self) -> Any:
        token = self.next()
        if token.text == "(":
            node = self.or_expr()
            self.expect(")")
            return node
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"), "Edm.String")
        if token.kind == "guid":
            return Literal(token.text.lower(), "Edm.Guid")
        if token.kind == "datetime":
            return Literal(token.text, "Edm.DateTimeOffset")
        if token.kind == "number":
            raw = token.text.rstrip("mMdDlLfF")
            return Literal(float(raw) if any(c in raw for c in ".eE") else int(raw), "number")
        if token.kind != "ident":
            raise syntax_error(f"Syntax error at position {token.pos} in '{self.text}'.")
        word = token.text
        lower = word.lower()
        if lower in ("true", "false"):
            return Literal(lower == "true", "bool")
        if lower == "null":
            return Literal(None, "null")
        if self.peek() is not None and self.peek().text == "(":  # type: ignore[union-attr]
            return self.function(word)
        return self.member(word)

    def entity(self, var: str | None = None) -> Entity:
        for name, entity in reversed(self.scopes):
            if name == var:
                return entity
        raise syntax_error(f"Syntax error: unknown range variable '{var}'.")

    def member(self, word: str) -> Any:
        var: str | None = None
        if any(word == name for name, _ in self.scopes[1:]):
            var = word
            self.expect("/")
            word = self.next().text
        entity = self.entity(var)
        if self.peek() is not None and self.peek().text == "/":  # type: ignore[union-attr]
            return self.lambda_expr(entity, word)
        attr = entity.columns.get(word)
        if attr is None:
            raise unknown_property(word, entity.logical)
        return Prop(attr.column, attr.edm, var)

    def lambda_expr(self, entity: Entity, nav: str) -> Node:
        child = self.nav_entity(entity, nav)
        if child is None:
            raise unknown_property(nav, entity.logical)
        self.expect("/")
        kind = self.next().text.lower()
        if kind not in ("any", "all"):
            raise syntax_error(f"Syntax error: only any/all may follow '{nav}/'.")
        self.expect("(")
        if self.peek() is not None and self.peek().text == ")":  # type: ignore[union-attr]
            self.next()
            return Node(kind, [nav, None, None])
        var = self.next().text
        self.expect(":")
        self.scopes.append((var, child))
        body = self.or_expr()
        self.scopes.pop()
        self.expect(")")
        return Node(kind, [nav, var, body])

    def function(self, name: str) -> Node:
        lower = name.lower()
        self.expect("(")
        if lower.startswith("microsoft.dynamics.crm."):
            return self.query_function(name, lower.rsplit(".", 1)[1])
        if lower in ("contains", "startswith", "endswith"):
            prop = self.primary()
            self.expect(",")
            literal = self.primary()
            self.expect(")")
            if not isinstance(prop, Prop) or not isinstance(literal, Literal):
                raise syntax_error(f"Syntax error: {name}() takes a property and a string.")
            if prop.edm != "Edm.String" or literal.kind != "Edm.String":
                raise syntax_error(f"No function signature for the function with name '{name}' "
                                   f"matches the specified arguments. The function signatures "
                                   f"considered are: {name}(Edm.String Nullable=true, "
                                   f"Edm.String Nullable=true).")
            return Node(lower, [prop, literal])
        raise syntax_error(f"An unknown function with name '{name}' was found.")

    def query_function(self, name: str, short: str) -> Node:
        if short not in QUERY_FUNCTIONS:
            raise syntax_error(f"An unknown function with name '{name}' was found.")
        params: dict[str, Any] = {}
        while True:
            key = self.next().text
            self.expect("=")
            if self.peek() is not None and self.peek().text == "[":  # type: ignore[union-attr]
                self.next()
                values: list[Any] = []
                while self.peek() is not None and self.peek().text != "]":  # type: ignore[union-attr]
                    values.append(self.primary())
                    if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                        self.next()
                self.expect("]")
                params[key] = values
            else:
                params[key] = self.primary()
            if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.next()
                continue
            self.expect(")")
            break
        prop_name = params.get("PropertyName")
        values = params.get("PropertyValues")
        if not isinstance(prop_name, Literal) or not isinstance(values, list):
            raise syntax_error(f"{name} requires PropertyName='...' and PropertyValues=[...].")
        entity = self.entity(None)
        attr = entity.columns.get(str(prop_name.value))
        if attr is None:
            raise unknown_property(str(prop_name.value), entity.logical)
        converted = [coerce_in_value(v, attr.edm) for v in values]
        return Node("in", [Prop(attr.column, attr.edm), converted, QUERY_FUNCTIONS[short]])


def coerce_in_value(literal: Any, edm: str) -> Any:
    """In() takes its values as strings: turn each into the column's comparable form."""
    if not isinstance(literal, Literal):
        raise syntax_error("PropertyValues must be literals.")
    value = literal.value
    if value is None:
        return None
    try:
        if edm in NUMERIC:
            return float(value)
        if edm == "Edm.Boolean":
            return str(value).lower() == "true" if isinstance(value, str) else bool(value)
        return normalize(value, edm)
    except ValueError as error:
        raise syntax_error(f"'{value}' is not a valid {edm} value.") from error


def _literal_fits(edm: str, kind: str) -> bool:
    if kind == "null":
        return True
    if edm == "Edm.String":
        return kind == "Edm.String"
    if edm == "Edm.Guid":
        return kind == "Edm.Guid"
    if edm in NUMERIC:
        return kind == "number"
    if edm == "Edm.Boolean":
        return kind == "bool"
    if edm in ("Edm.DateTimeOffset", "Edm.Date"):
        return kind == "Edm.DateTimeOffset"
    return True


def check_types(left: Any, right: Any, op: str) -> None:
    prop, literal = (left, right) if isinstance(left, Prop) else (right, left)
    if not isinstance(prop, Prop) or not isinstance(literal, Literal):
        if isinstance(left, Prop) and isinstance(right, Prop):
            return
        raise syntax_error("Syntax error: a comparison needs a property and a literal.")
    if not _literal_fits(prop.edm, literal.kind):
        kind = {"number": "Edm.Int32", "bool": "Edm.Boolean"}.get(literal.kind, literal.kind)
        raise syntax_error(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{prop.edm}' and '{kind}' for operator kind '{OP_KIND[op]}'.")


# --- evaluation -----------------------------------------------------------------------------

Row = dict[str, Any]
Children = Callable[[Row, str], list[Row]]


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None:  # SQL semantics: null never compares (eq/ne null handled above)
        return False
    try:
        if op == "eq":
            return bool(a == b)
        if op == "ne":
            return bool(a != b)
        if op == "gt":
            return bool(a > b)
        if op == "ge":
            return bool(a >= b)
        if op == "lt":
            return bool(a < b)
        return bool(a <= b)
    except TypeError:
        return False


def compile_filter(node: Any) -> Callable[[Row, dict[str, Row], Children], bool]:
    """AST -> predicate(row, lambda_vars, children)."""

    def value_of(operand: Any, edm: str) -> Callable[[Row, dict[str, Row]], Any]:
        if isinstance(operand, Literal):
            constant = normalize(operand.value, edm) if operand.kind != "bool" else operand.value
            return lambda row, env: constant
        if isinstance(operand, Prop):
            column, var, kind = operand.column, operand.var, operand.edm
            if var is None:
                return lambda row, env: normalize(row.get(column), kind)
            return lambda row, env: normalize(env[var].get(column), kind)
        raise syntax_error("Syntax error in $filter.")

    def build(n: Any) -> Callable[[Row, dict[str, Row], Children], bool]:
        if not isinstance(n, Node):
            raise syntax_error("Syntax error in $filter.")
        if n.op == "and":
            a, b = build(n.args[0]), build(n.args[1])
            return lambda r, e, c: a(r, e, c) and b(r, e, c)
        if n.op == "or":
            a, b = build(n.args[0]), build(n.args[1])
            return lambda r, e, c: a(r, e, c) or b(r, e, c)
        if n.op == "not":
            a = build(n.args[0])
            return lambda r, e, c: not a(r, e, c)
        if n.op in COMPARISONS:
            left, right = n.args
            edm = left.edm if isinstance(left, Prop) else right.edm
            lv, rv, op = value_of(left, edm), value_of(right, edm), n.op
            if any(isinstance(a, Literal) and a.kind == "null" for a in n.args):
                other = lv if isinstance(right, Literal) else rv
                if op not in ("eq", "ne"):
                    return lambda r, e, c: False
                wanted_null = op == "eq"
                return lambda r, e, c: (other(r, e) is None) == wanted_null
            return lambda r, e, c: _compare(op, lv(r, e), rv(r, e))
        if n.op in ("contains", "startswith", "endswith"):
            getter = value_of(n.args[0], "Edm.String")
            needle = str(n.args[1].value).casefold()
            test = {"contains": lambda v: needle in v, "startswith": lambda v: v.startswith(needle),
                    "endswith": lambda v: v.endswith(needle)}[n.op]

            def fn(r: Row, e: dict[str, Row], c: Children) -> bool:
                value = getter(r, e)
                return value is not None and test(value)
            return fn
        if n.op == "in":
            prop, values, negate = n.args
            getter = value_of(prop, prop.edm)
            wanted = set(values)

            def fn_in(r: Row, e: dict[str, Row], c: Children) -> bool:
                value = getter(r, e)
                if value is None:
                    return False
                return (value in wanted) != negate
            return fn_in
        if n.op in ("any", "all"):
            nav, var, body = n.args
            inner = build(body) if body is not None else None
            is_any = n.op == "any"

            def fn_lambda(r: Row, e: dict[str, Row], c: Children) -> bool:
                rows = c(r, nav)
                if inner is None:
                    return bool(rows) if is_any else True
                results = (inner(r, {**e, var: child}, c) for child in rows)
                return any(results) if is_any else all(results)
            return fn_lambda
        raise syntax_error(f"Unsupported $filter operator '{n.op}'.")

    return build(node)


def parse_filter(text: str, entity: Entity,
                 nav_entity: Callable[[Entity, str], Entity | None]) -> Any:
    return Parser(text, entity, nav_entity).parse()


def index_hints(node: Any) -> list[tuple[str, list[Any]]]:
    """Top-level `col eq 'x'` / In() conjuncts: candidates a hash index can answer."""
    hints: list[tuple[str, list[Any]]] = []

    def walk(n: Any) -> None:
        if not isinstance(n, Node):
            return
        if n.op == "and":
            walk(n.args[0])
            walk(n.args[1])
        elif n.op == "eq":
            left, right = n.args
            prop, lit = (left, right) if isinstance(left, Prop) else (right, left)
            if (isinstance(prop, Prop) and prop.var is None and isinstance(lit, Literal)
                    and lit.value is not None):
                hints.append((prop.column, [normalize(lit.value, prop.edm)]))
        elif n.op == "in" and not n.args[2] and n.args[0].var is None:
            hints.append((n.args[0].column, [v for v in n.args[1] if v is not None]))

    walk(node)
    return hints


