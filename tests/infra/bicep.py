"""A small reader of Bicep syntax trees (tree-sitter-bicep) for the infrastructure tests.

It answers the questions the tests ask (which parameters, which decorators, which object keys,
which app settings) by walking the syntax tree, so formatting, comments and line breaks in the
Bicep files never change the answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser, Tree

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"

_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


@cache
def parse(path: Path) -> Tree:
    return _parser().parse(path.read_bytes())


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(node: Node) -> str:
    return (node.text or b"").decode()


def problems(tree: Tree) -> list[str]:
    """ERROR and MISSING nodes, as 'line:col type' strings."""
    out = []
    for n in walk(tree.root_node):
        if n.type == "ERROR" or n.is_missing:
            kind = f"MISSING {n.type}" if n.is_missing else n.type
            out.append(f"{n.start_point[0] + 1}:{n.start_point[1] + 1} {kind}")
    return out


def literal(node: Node | None) -> str | int | bool | None:
    """The value of a string (without interpolation), number or boolean literal, else None."""
    if node is None:
        return None
    if node.type == "string":
        parts: list[str] = []
        for child in node.children:
            if child.type == "string_content":
                parts.append(text(child))
            elif child.type == "escape_sequence":
                parts.append(_ESCAPES.get(text(child), text(child)))
            elif child.type == "interpolation":
                return None
        return "".join(parts)
    if node.type == "number":
        return int(text(node))
    if node.type == "boolean":
        return text(node) == "true"
    if node.type in ("true", "false"):
        return node.type == "true"
    return None


def is_interpolated(node: Node) -> bool:
    return node.type == "string" and any(c.type == "interpolation" for c in node.children)


def string_prefix(node: Node) -> str:
    """The literal text of a string before its first interpolation."""
    out: list[str] = []
    for child in node.children[1:]:
        if child.type == "string_content":
            out.append(text(child))
        elif child.type == "escape_sequence":
            out.append(_ESCAPES.get(text(child), text(child)))
        else:
            break
    return "".join(out)


def property_key(prop: Node) -> str | None:
    """The key of an object_property (identifier or string), None for a nested resource."""
    first = prop.children[0] if prop.children else None
    if first is None:
        return None
    if first.type == "identifier":
        return text(first)
    if first.type == "string":
        value = literal(first)
        return value if isinstance(value, str) else None
    return None


def property_value(prop: Node) -> Node | None:
    seen_colon = False
    for child in prop.children:
        if seen_colon and child.type != "comment":
            return child
        if child.type == ":":
            seen_colon = True
    return None


def properties(obj: Node) -> dict[str, Node]:
    """Key -> value node of an object literal's own properties."""
    out: dict[str, Node] = {}
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        key = property_key(prop)
        value = property_value(prop)
        if key is not None and value is not None:
            out[key] = value
    return out


def get_path(obj: Node, *keys: str) -> Node | None:
    """Follow nested object keys, e.g. get_path(body, 'properties', 'functionAppConfig')."""
    node: Node | None = obj
    for key in keys:
        if node is None or node.type != "object":
            return None
        node = properties(node).get(key)
    return node


@dataclass(frozen=True)
class Param:
    name: str
    node: Node
    default: Node | None
    description: str | None
    decorators: tuple[str, ...]


def _decorator_calls(decorators: Node | None) -> dict[str, Node]:
    calls: dict[str, Node] = {}
    if decorators is None or decorators.type != "decorators":
        return calls
    for decorator in decorators.named_children:
        call = next((c for c in decorator.named_children if c.type == "call_expression"), None)
        if call is None:
            continue
        callee = call.children[0]
        name = text(callee).split(".")[-1]  # `sys.description` -> `description`
        calls[name] = call
    return calls


def _first_argument(call: Node) -> Node | None:
    args = next((c for c in call.children if c.type == "arguments"), None)
    if args is None or not args.named_children:
        return None
    return args.named_children[0]


def params(tree: Tree) -> dict[str, Param]:
    out: dict[str, Param] = {}
    for node in tree.root_node.named_children:
        if node.type != "parameter_declaration":
            continue
        name = text(node.named_children[0])
        default = None
        for i, child in enumerate(node.children):
            if child.type == "=":
                default = node.children[i + 1]
        calls = _decorator_calls(node.prev_named_sibling)
        description = None
        if "description" in calls:
            value = literal(_first_argument(calls["description"]))
            description = value if isinstance(value, str) else None
        out[name] = Param(name, node, default, description, tuple(calls))
    return out


def variables(tree: Tree) -> dict[str, Node]:
    out: dict[str, Node] = {}
    for node in tree.root_node.named_children:
        if node.type == "variable_declaration":
            named = node.named_children
            out[text(named[0])] = named[-1]
    return out


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    body: Node  # the object literal (inside a `for` or `if` when there is one)
    conditional: bool
    node: Node


def resources(tree: Tree) -> list[Resource]:
    """Every resource declaration, nested ones included."""
    out: list[Resource] = []
    for node in walk(tree.root_node):
        if node.type != "resource_declaration":
            continue
        named = node.named_children
        symbol = text(named[0])
        rtype = literal(named[1])
        value = named[-1]
        conditional = False
        if value.type == "for_statement":
            value = next(c for c in value.named_children if c.type in ("object", "if_statement"))
        if value.type == "if_statement":
            conditional = True
            value = next(c for c in value.named_children if c.type == "object")
        out.append(Resource(symbol, str(rtype), value, conditional, node))
    return out


def modules(tree: Tree) -> list[tuple[str, str]]:
    """(symbol, path) of every module declaration."""
    out = []
    for node in tree.root_node.named_children:
        if node.type == "module_declaration":
            named = node.named_children
            out.append((text(named[0]), str(literal(named[1]))))
    return out


@dataclass(frozen=True)
class AppSetting:
    name: str
    value: Node
    conditional: bool


class UnsupportedExpression(AssertionError):
    pass


def app_settings(tree: Tree) -> dict[str, AppSetting]:
    """The app settings of the `config` resource named 'appsettings' in this file.

    Follows variables, `union(...)`, parentheses and ternaries (whose branches count as
    conditional); refuses anything else, so a setting can never hide from the tests.
    """
    configs = [
        r
        for r in resources(tree)
        if (r.type == "config" or r.type.startswith("Microsoft.Web/sites/config@"))
        and literal(properties(r.body).get("name")) == "appsettings"
    ]
    assert len(configs) == 1, f"expected one appsettings config resource, found {len(configs)}"
    root = properties(configs[0].body).get("properties")
    assert root is not None, "the appsettings resource has no properties"
    defined = variables(tree)
    found: dict[str, AppSetting] = {}

    def visit(node: Node, conditional: bool, seen: frozenset[str]) -> None:
        if node.type == "object":
            for key, value in properties(node).items():
                assert key not in found, f"app setting {key} is set twice"
                found[key] = AppSetting(key, value, conditional)
        elif node.type == "identifier":
            name = text(node)
            if name not in defined or name in seen:
                raise UnsupportedExpression(f"cannot follow {name!r} to an object of settings")
            visit(defined[name], conditional, seen | {name})
        elif node.type == "parenthesized_expression":
            for child in node.named_children:
                visit(child, conditional, seen)
        elif node.type == "ternary_expression":
            branches = [c for c in node.named_children][1:]
            for branch in branches:
                visit(branch, True, seen)
        elif node.type == "call_expression" and text(node.children[0]) == "union":
            args = next(c for c in node.children if c.type == "arguments")
            for arg in args.named_children:
                visit(arg, conditional, seen)
        else:
            raise UnsupportedExpression(
                f"line {node.start_point[0] + 1}: cannot read app settings from {node.type}"
            )

    visit(root, False, frozenset())
    return found
