"""Query options: $select, $filter, $orderby, $top, $count, $expand and server-driven paging.

Follows query-data-web-api: `Prefer: odata.maxpagesize=N` pages with an opaque `$skiptoken`
in `@odata.nextLink` (and `Preference-Applied`), `$top` caps the result and disables paging,
`$count=true` adds `@odata.count`, unknown columns are 400 `0x80060888`. Rows the caller may not
see are dropped before anything else; secured columns read (and filter) as null.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from sandbox.dataverse import errors
from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.metadata import Entity
from sandbox.dataverse.odata_filter import (
    compile_filter,
    index_hints,
    normalize,
    parse_filter,
)
from sandbox.dataverse.store import Caller, CrmStore
from sandbox.dataverse.writes import resolve_nav

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname"
ASSOCIATED_NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
MAX_PAGE = 5000


@dataclass
class Options:
    select: list[str] | None = None
    filter: Any = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    top: int | None = None
    count: bool = False
    expand: list[Expand] = field(default_factory=list)
    skiptoken: str | None = None


@dataclass
class Expand:
    nav: str
    collection: bool
    entity: Entity
    attr_column: str | None       # lookup column for single-valued navs
    fixed_table: str | None
    options: Options


@dataclass
class Prefer:
    maxpagesize: int | None = None
    annotations: str | None = None
    representation: bool = False
    continue_on_error: bool = False

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        prefer = cls()
        for part in (header or "").split(","):
            key, _, value = part.strip().partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "odata.maxpagesize" and value.isdigit():
                prefer.maxpagesize = max(1, min(int(value), MAX_PAGE))
            elif key in ("odata.include-annotations", "include-annotations"):
                prefer.annotations = value
            elif key == "return" and value == "representation":
                prefer.representation = True
            elif key == "odata.continue-on-error":
                prefer.continue_on_error = True
        return prefer

    def wants(self, annotation: str) -> bool:
        if not self.annotations:
            return False
        for pattern in self.annotations.split(","):
            pattern = pattern.strip()
            if pattern in ("*", annotation) or (pattern.endswith(".*") and
                                                annotation.startswith(pattern[:-1])):
                return True
        return False


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside parentheses and quotes ($expand=a($select=x,y),b)."""
    parts, depth, quoted, current = [], 0, False, []
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current or parts:
        parts.append("".join(current))
    return [p for p in (s.strip() for s in parts) if p]


def nav_entity(store: CrmStore, entity: Entity, nav: str) -> Entity | None:
    """The entity a collection navigation leads to (party lists only)."""
    if entity.party_nav and nav == entity.party_nav:
        return store.md.by_logical["activityparty"]
    return None


def parse_options(store: CrmStore, entity: Entity, params: dict[str, str]) -> Options:
    options = Options()
    known = {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken"}
    for key in params:
        if key.startswith("$") and key not in known:
            raise errors.bad_request(f"The query parameter '{key}' is not supported.",
                                     errors.UNKNOWN_PROPERTY)
    if params.get("$select"):
        options.select = []
        for name in (s.strip() for s in params["$select"].split(",")):
            if name not in entity.columns:
                raise errors.unknown_property(name, entity.logical)
            options.select.append(name)
    if params.get("$filter"):
        options.filter = parse_filter(params["$filter"], entity,
                                      lambda ent, nav: nav_entity(store, ent, nav))
    if params.get("$orderby"):
        for clause in params["$orderby"].split(","):
            words = clause.split()
            if not words or len(words) > 2 or (len(words) == 2 and
                                               words[1].lower() not in ("asc", "desc")):
                raise errors.bad_request(f"Syntax error in $orderby '{clause}'.",
                                         errors.UNKNOWN_PROPERTY)
            if words[0] not in entity.columns:
                raise errors.unknown_property(words[0], entity.logical)
            options.orderby.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    if params.get("$top"):
        if not params["$top"].isdigit():
            raise errors.bad_request("Invalid value for $top.", errors.UNKNOWN_PROPERTY)
        options.top = int(params["$top"])
    if params.get("$count"):
        options.count = params["$count"].lower() == "true"
    if params.get("$expand"):
        for item in _split_top(params["$expand"], ","):
            options.expand.append(parse_expand(store, entity, item))
    options.skiptoken = params.get("$skiptoken")
    return options


def parse_expand(store: CrmStore, entity: Entity, item: str) -> Expand:
    nav, _, rest = item.partition("(")
    nav = nav.strip()
    inner: dict[str, str] = {}
    if rest:
        if not rest.endswith(")"):
            raise errors.bad_request(f"Syntax error in $expand '{item}'.", errors.UNKNOWN_PROPERTY)
        for option in _split_top(rest[:-1], ";"):
            key, _, value = option.partition("=")
            inner[key.strip()] = value.strip()
    child = nav_entity(store, entity, nav)
    if child is not None:
        return Expand(nav, True, child, None, None, parse_options(store, child, inner))
    resolved = resolve_nav(entity, nav)
    if resolved is None:
        raise errors.unknown_property(nav, entity.logical)
    attr, fixed = resolved
    target = fixed or _single_target(attr)
    if target is None or target not in store.md.by_logical:
        # Polymorphic lookup expanded without naming a table: use the row's table at read time.
        target_entity = None
    else:
        target_entity = store.md.by_logical[target]
    opts_entity = target_entity or store.md.by_logical["systemuser"]
    if inner.get("$expand"):
        raise errors.bad_request("Nested $expand is not supported by the sandbox.",
                                 errors.UNKNOWN_PROPERTY)
    sub = parse_options(store, opts_entity, {k: v for k, v in inner.items() if k == "$select"}) \
        if target_entity is not None else Options(
            select=[s.strip() for s in inner["$select"].split(",")] if inner.get("$select")
            else None)
    return Expand(nav, False, opts_entity, attr.column, fixed or target, sub)


def _single_target(attr: Any) -> str | None:
    targets = [{"user": "systemuser"}.get(t, t) for t in attr.targets]
    if attr.logical in ("ownerid", "owninguser", "createdby", "modifiedby", "createdonbehalfby",
                        "modifiedonbehalfby"):
        return "systemuser"
    if attr.logical == "parentactivityid":
        return "email"
    return targets[0] if len(targets) == 1 else None


# --- execution ------------------------------------------------------------------------------


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def select_rows(store: CrmStore, entity: Entity, rows: list[dict[str, Any]], options: Options,
                caller: Caller, *, candidates_from_index: bool = True) -> list[dict[str, Any]]:
    """Visible rows matching $filter, ordered; secured columns masked for the filter."""
    logical = entity.logical
    hidden = store.hidden_columns(logical, caller)
    if options.filter is not None and candidates_from_index and logical in store.tables:
        table = store.tables[logical]
        for column, keys in index_hints(options.filter):
            if column in hidden:
                continue
            ids = table.lookup(column, keys)
            if ids is not None:
                rows = [table.rows[i] for i in ids if i in table.rows]
                break
    predicate = compile_filter(options.filter) if options.filter is not None else None
    children = _children_fn(store, caller)
    result = []
    for row in rows:
        if not store.visible(logical, row, caller):
            continue
        if predicate is not None and not predicate(store.masked(row, hidden), {}, children):
            continue
        result.append(row)
    if options.orderby:
        for column, desc in reversed(options.orderby):
            edm = entity.columns[column].edm
            result.sort(key=lambda r, c=column, e=edm: _sort_key(
                None if c in hidden else normalize(r.get(c), e)), reverse=desc)
    else:
        order = {k: i for i, k in enumerate(store.tables[logical].rows)} \
            if logical in store.tables else None
        if order is not None and len(result) > 1:
            result.sort(key=lambda r: order.get(r[entity.primary_key], 0))
    return result


def _children_fn(store: CrmStore, caller: Caller) -> Any:
    def children(row: dict[str, Any], nav: str) -> list[dict[str, Any]]:
        activity_id = row.get("activityid")
        if not activity_id:
            return []
        hidden = store.hidden_columns("activityparty", caller)
        table = store.tables["activityparty"]
        return [store.masked(table.rows[p], hidden) for p in store.parties_of(activity_id)]
    return children


def project(store: CrmStore, entity: Entity, row: dict[str, Any], caller: Caller,
            options: Options, prefer: Prefer) -> dict[str, Any]:
    """One row as JSON: @odata.etag, the selected columns (nulls included), expansions."""
    logical = row.get("activitytypecode") if entity.logical == "activitypointer" else None
    hidden = store.hidden_columns(entity.logical, caller)
    out: dict[str, Any] = {"@odata.etag": store.etag(row)}
    columns = options.select if options.select is not None else list(entity.columns)
    lookups = row.get("@lookup", {})
    for column in columns:
        value = None if column in hidden else row.get(column)
        attr = entity.columns[column]
        if value is not None and prefer.annotations:
            if attr.lookup:
                target = lookups.get(column)
                if prefer.wants(FORMATTED[1:]):
                    name = _display_name(store, target, value)
                    if name is not None:
                        out[column + FORMATTED] = name
                if prefer.wants(ASSOCIATED_NAV[1:]):
                    out[column + ASSOCIATED_NAV] = _associated_nav(entity, attr.logical, target)
                if prefer.wants(LOOKUP_NAME[1:]) and target:
                    out[column + LOOKUP_NAME] = target
            elif attr.options and prefer.wants(FORMATTED[1:]):
                label = attr.options.get(value)
                if label is not None:
                    out[column + FORMATTED] = label.split(" (state")[0]
            elif attr.edm == "Edm.Boolean" and prefer.wants(FORMATTED[1:]):
                out[column + FORMATTED] = "Yes" if value else "No"
        out[column] = value
    out[entity.primary_key] = row.get(entity.primary_key)
    if logical:
        out["activitytypecode"] = logical
    for expand in options.expand:
        out[expand.nav] = _expanded(store, row, expand, caller, prefer)
    return out


def _associated_nav(entity: Entity, attr: str, target: str | None) -> str:
    if attr == "regardingobjectid" and target:
        return f"regardingobjectid_{target}_{entity.logical}"
    if attr in ("partyid", "emailsender", "parentcustomerid", "customerid") and target:
        return f"{attr}_{target}"
    return attr


def _display_name(store: CrmStore, target: str | None, value: str) -> str | None:
    if not target or target not in store.md.by_logical:
        return None
    row = store.row(target, value)
    name = store.md.by_logical[target].primary_name
    return row.get(name) if row and name else None


def _expanded(store: CrmStore, row: dict[str, Any], expand: Expand, caller: Caller,
              prefer: Prefer) -> Any:
    if expand.collection:
        table = store.tables["activityparty"]
        parties = [table.rows[p] for p in store.parties_of(str(row.get("activityid")))]
        selected = select_rows(store, expand.entity, parties, expand.options, caller,
                               candidates_from_index=False)
        if expand.options.top is not None:
            selected = selected[: expand.options.top]
        return [project(store, expand.entity, p, caller, expand.options, prefer) for p in selected]
    value = row.get(expand.attr_column or "")
    target = row.get("@lookup", {}).get(expand.attr_column or "")
    if value is None or (expand.fixed_table and target != expand.fixed_table):
        return None
    entity = store.md.by_logical.get(target or "")
    related = store.row(target, value) if entity else None
    if entity is None or related is None or not store.visible(entity.logical, related, caller):
        return None
    options = expand.options
    if expand.entity is not entity and options.select:
        for name in options.select:
            if name not in entity.columns:
                raise errors.unknown_property(name, entity.logical)
    return project(store, entity, related, caller, options, prefer)


def encode_skiptoken(offset: int, page: int) -> str:
    cookie = base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()
    return (f'<cookie pagenumber="{page}" pagingcookie="{cookie}" istracking="False" />')


def decode_skiptoken(token: str) -> int:
    try:
        text = unquote(token)
        start = text.index('pagingcookie="') + len('pagingcookie="')
        cookie = text[start: text.index('"', start)]
        return int(json.loads(base64.urlsafe_b64decode(cookie.encode()))["o"])
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise DataverseError(400, errors.UNKNOWN_PROPERTY, "Invalid $skiptoken.") from error


def next_link(url_without_skiptoken: str, offset: int, page: int) -> str:
    sep = "&" if "?" in url_without_skiptoken else "?"
    return f"{url_without_skiptoken}{sep}$skiptoken={quote(encode_skiptoken(offset, page))}"
