"""Check the requests our Dataverse client sends against tests/specs/dataverse-subset.json.

The subset is compact entity metadata, not CSDL, so the Web API rules are spelled out here
(from the subset's own `edm_mapping` and navigation notes): columns in `$select`, `$orderby`
and `$filter` must be attributes, a lookup read as `_<name>_value` and written only through
`<navigation>@odata.bind`; a party list is not a property but the `<activity>_activity_parties`
collection, deep-inserted as activityparty rows; option-set values must be among the spec's
options; strings within their max length. `$batch` is multipart/mixed (at most 1,000
requests, change sets without GETs and with unique Content-IDs) and each inner request is
checked the same way. The parser here is independent of shared/dataverse/batch.py on purpose:
the builder's own helpers would accept their own mistakes.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from tests.sandbox.graph_conformance import NonConformance

SPEC_PATH = Path(__file__).resolve().parents[1] / "specs" / "dataverse-subset.json"
API_PREFIX = "/api/data/v9.2/"
BATCH_LIMIT = 1000

# Outside the subset but used by the project (regarding targets, settings default). Only the
# entity set and primary key are known: their columns are not checked.
EXTRA_ENTITIES = {"opportunities": ("opportunity", "opportunityid"),
                  "incidents": ("incident", "incidentid")}
# Functions and actions (reference/whoami, reference/sendemail): parameter -> (type, required).
FUNCTIONS = {"WhoAmI": "GET", "WhoAmI()": "GET"}
ACTIONS = {("email", "Microsoft.Dynamics.CRM.SendEmail"): {"IssueSend": (bool, True),
                                                            "TrackingToken": (str, False)}}
# Regarding targets beyond CDM's: lead (the spec's `_pattern` note: added by Dynamics 365 Sales)
# and the extras above.
REGARDING_EXTRAS = ("lead", "opportunity", "incident")
# "user" in CDM lookup targets is the systemuser table.
CDM_TABLES = {"user": "systemuser"}

QUERY_OPTIONS = {
    "collection": {"$select", "$filter", "$orderby", "$top", "$expand", "$count", "$skiptoken"},
    "record": {"$select", "$expand"},
}
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GUID_RE = re.compile(f"^{GUID}$")
SEGMENT_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?$")
BIND_RE = re.compile(r"^/?([A-Za-z_][A-Za-z0-9_]*)\((" + GUID + r")\)$")
FILTER_WORDS = {"and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "null", "true", "false",
                "any", "all", "asc", "desc", "in", "has"}

__all__ = ["NonConformance", "assert_request_conforms", "request_problems"]


@functools.cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Entity:
    logical: str
    entity_set: str
    primary_key: str
    raw: dict[str, Any] | None  # None: outside the subset, columns unchecked

    @property
    def attributes(self) -> dict[str, Any] | None:
        attrs = (self.raw or {}).get("attributes")
        return attrs if isinstance(attrs, dict) else None

    def lookups(self) -> dict[str, list[str]]:
        """Lookup attribute -> target tables (from `webApi: _x_value ...`)."""
        out = {}
        for name, attr in (self.attributes or {}).items():
            if str(attr.get("webApi", "")).startswith(f"_{name}_value"):
                out[name] = [CDM_TABLES.get(t, t) for t in attr.get("targetsPerCdm", [])]
        return out

    def selectable(self) -> set[str] | None:
        """Column names a query may use: attributes, lookups as `_x_value`, no party lists."""
        if self.attributes is None:
            return None
        lookups = self.lookups()
        return {f"_{n}_value" if n in lookups else n
                for n, a in self.attributes.items() if not a.get("partyList")}

    def collections(self) -> dict[str, str]:
        """Collection-valued navigation -> target logical name (party lists and the spec's)."""
        out: dict[str, str] = {}
        if any(a.get("partyList") for a in (self.attributes or {}).values()):
            out[f"{self.logical}_activity_parties"] = "activityparty"
        for name, target in (self.raw or {}).get("navigation", {}).get("collection", {}).items():
            out[name] = str(target).split(".", 1)[0]
        return out

    def single_navs(self) -> dict[str, str | None]:
        """Single-valued navigation -> target logical name (None when it may be several).

        Where the spec names them (email's `navigation`) only those names; activityparty's
        `navigation_pattern`; other lookups follow the subset's edm_mapping: `<attr>`, or
        `<attr>_<table>` when the lookup has several targets, and
        `regardingobjectid_<table>_<activity>`.
        """
        raw = self.raw or {}
        out: dict[str, str | None] = {}
        lookups = self.lookups()
        regarding_targets = [*lookups.get("regardingobjectid", []), *REGARDING_EXTRAS]
        explicit = "navigation" in raw
        covered: set[str] = set()
        for group, names in raw.get("navigation", {}).items():
            if group == "collection":
                continue
            regarding = group.startswith("regardingobjectid")
            if regarding:
                covered.add("regardingobjectid")
            for attr, nav in names.items():
                covered.add(attr)
                if attr == "_pattern":  # regardingobjectid_<table>_email for other tables
                    for table in regarding_targets:
                        out.setdefault(f"regardingobjectid_{table}_{self.logical}", table)
                    continue
                for name in str(nav).split("|"):
                    target = attr if regarding else lookups.get(attr, [None, None])[0] \
                        if len(lookups.get(attr, [])) == 1 else None
                    if name.startswith("emailsender_"):
                        target = name.split("_", 1)[1]
                    out[name] = target
        pattern = raw.get("navigation_pattern", {})
        if "partyid" in pattern:  # partyid_<table> for the documented targets
            text = str(raw.get("partyid_targets", "")).replace("with Sales", "")
            out.update({f"partyid_{t}": t for t in re.findall(r"[a-z]+", text)})
        if "activityid" in pattern:
            out.update({f"activityid_{t}": t for t in lookups.get("activityid", [])})
        covered |= set(pattern)
        for attr, targets in lookups.items():
            if explicit or attr in covered:
                continue
            if attr == "regardingobjectid":
                out.update({f"regardingobjectid_{t}_{self.logical}": t
                            for t in regarding_targets})
            elif len(targets) == 1:
                out[attr] = targets[0]
            else:
                out.update({f"{attr}_{t}": t for t in targets})
        return out


@functools.cache
def entities() -> dict[str, Entity]:
    """By entity set name."""
    out = {e["entitySet"]: Entity(logical, e["entitySet"], e["primaryKey"], e)
           for logical, e in spec()["entities"].items()}
    out.update({s: Entity(logical, s, key, None) for s, (logical, key) in EXTRA_ENTITIES.items()})
    return out


def by_logical(logical: str | None) -> Entity | None:
    return next((e for e in entities().values() if e.logical == logical), None)


# --- query options ------------------------------------------------------------------------------


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses and quotes."""
    parts, depth, quoted, current = [], 0, False, ""
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current] if current or parts else []


def _columns_problems(entity: Entity, columns: list[str], what: str) -> list[str]:
    allowed = entity.selectable()
    if allowed is None:
        return []
    bad = [c for c in columns if c not in allowed]
    hints = [f" (a lookup is `_{c}_value`)" if c in entity.lookups() else "" for c in bad]
    return [f"{what} {c!r} is not a column of {entity.logical}{h}" for c, h in zip(bad, hints,
                                                                                 strict=True)]


def _expand_problems(entity: Entity, raw: str) -> list[str]:
    problems: list[str] = []
    for item in _split_top(raw, ","):
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", item, re.S)
        if not match:
            problems.append(f"$expand {item!r}: malformed")
            continue
        nav, options = match.groups()
        target: str | None
        if nav in entity.collections():
            target = entity.collections()[nav]
        elif nav in entity.single_navs():
            target = entity.single_navs()[nav]
        elif entity.raw is None:
            continue
        else:
            problems.append(f"$expand {nav!r} is not a navigation property of {entity.logical}")
            continue
        inner = by_logical(target)
        if options and inner is not None:
            query = [(o.partition("=")[0], o.partition("=")[2]) for o in
                     _split_top(options, ";")]
            for name, _ in query:
                if name not in ("$select", "$filter", "$orderby", "$top"):
                    problems.append(f"$expand {nav}: option {name!r} not allowed")
            problems += _option_problems(inner, query, f"$expand {nav}: ")
    return problems


def _filter_problems(entity: Entity, text: str) -> list[str]:
    """Column names used by a $filter: plain, `PropertyName='x'` of query functions, and
    `nav/any(p: p/x ...)` lambdas over a collection navigation."""
    problems: list[str] = []
    names = re.findall(r"PropertyName\s*=\s*'([^']*)'", text)
    stripped = re.sub(r"'(?:[^']|'')*'", "''", text)
    stripped = re.sub(GUID, " ", stripped)
    stripped = re.sub(r"\b\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?", " ", stripped)
    lambdas: dict[str, Entity | None] = {}
    for nav, var in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)/(?:any|all)\(\s*(\w+)\s*:", stripped):
        if nav not in entity.collections():
            if entity.raw is not None:
                problems.append(f"$filter lambda over {nav!r}: not a collection navigation")
            lambdas[var] = None
        else:
            lambdas[var] = by_logical(entity.collections()[nav])
    stripped = re.sub(r"[A-Za-z_][A-Za-z0-9_]*/(?:any|all)\(\s*\w+\s*:", "(", stripped)
    stripped = re.sub(r"Microsoft\.Dynamics\.CRM\.\w+\(|PropertyName|PropertyValues", " ",
                      stripped)
    for found in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)?", stripped):
        token = found.group(0)
        if token.lower() in FILTER_WORDS or stripped[found.end():].lstrip().startswith("("):
            continue  # keyword or function name
        if "/" in token:
            var, column = token.split("/", 1)
            if var in lambdas:
                if (target := lambdas[var]) is not None:
                    problems += _columns_problems(target, [column], "$filter column")
                continue
            problems.append(f"$filter path {token!r}: unknown range variable")
            continue
        names.append(token)
    return problems + _columns_problems(entity, names, "$filter column")


def _option_problems(entity: Entity, query: list[tuple[str, str]], prefix: str = ""
                     ) -> list[str]:
    problems: list[str] = []
    for name, value in query:
        if name == "$select":
            problems += _columns_problems(entity, [c.strip() for c in value.split(",")],
                                          "$select")
        elif name == "$orderby":
            columns = [c.split()[0] for c in value.split(",") if c.strip()]
            bad = [c for c in value.split(",") if len(c.split()) > 2 or (
                len(c.split()) == 2 and c.split()[1] not in ("asc", "desc"))]
            problems += [f"$orderby {c!r} malformed" for c in bad]
            problems += _columns_problems(entity, columns, "$orderby")
        elif name == "$filter":
            problems += _filter_problems(entity, value)
        elif name == "$expand":
            problems += _expand_problems(entity, value)
        elif name == "$top" and not (value.isdigit() and int(value) > 0):
            problems.append(f"$top {value!r}: not a positive integer")
        elif name == "$count" and value not in ("true", "false"):
            problems.append(f"$count {value!r}: not a boolean")
    return [prefix + p for p in problems]


# --- bodies ---------------------------------------------------------------------------------------


def _value_problems(entity: Entity, column: str, value: Any) -> list[str]:
    attr = (entity.attributes or {}).get(column, {})
    if value is None:
        return []
    edm = attr.get("edm")
    where = f"{entity.logical}.{column}"
    options = attr.get("options")
    if column in ("statecode", "statuscode") and isinstance(entity.raw, dict):
        options = entity.raw.get(column) or options
    checks = {
        "Edm.String": lambda v: isinstance(v, str),
        "Edm.Int32": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Edm.Int64": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Edm.Boolean": lambda v: isinstance(v, bool),
        "Edm.Guid": lambda v: isinstance(v, str) and bool(GUID_RE.match(v)),
        "Edm.DateTimeOffset": lambda v: isinstance(v, str) and bool(
            re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$", v)),
        "Edm.Date": lambda v: isinstance(v, str) and bool(re.match(r"^\d{4}-\d{2}-\d{2}$", v)),
        "Edm.Decimal": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "Edm.Double": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    check = checks.get(str(edm))
    if check is not None and not check(value):
        return [f"{where}={value!r}: not an {edm}"]
    if options and str(value) not in options:
        return [f"{where}={value!r}: not one of the options {sorted(options, key=int)}"]
    limit = attr.get("maxLength")
    if limit and isinstance(value, str) and len(value) > limit:
        return [f"{where}: {len(value)} characters, max {limit}"]
    return []


def _bind_problems(entity: Entity, key: str, value: Any) -> list[str]:
    nav = key[: -len("@odata.bind")]
    navs = entity.single_navs()
    if nav not in navs:
        known = sorted(n for n in navs if n.split("_")[0] == nav.split("_")[0])[:6]
        return [f"{key}: {nav!r} is not a single-valued navigation of {entity.logical}"
                + (f" (spec has {known})" if known else "")]
    match = BIND_RE.match(str(value)) if isinstance(value, str) else None
    if match is None:
        return [f"{key}={value!r}: not '/<entityset>(<guid>)'"]
    target = entities().get(match.group(1))
    if target is None:
        return [f"{key}: entity set {match.group(1)!r} unknown"]
    expected = navs[nav]
    if expected is not None and target.logical != expected:
        return [f"{key}: binds a {target.logical}, the navigation targets {expected}"]
    return []


def _state_status_problems(entity: Entity, body: dict[str, Any]) -> list[str]:
    """A statuscode names its state in the spec ('Received (state 1)'): the pair must agree."""
    raw = entity.raw or {}
    state, status = body.get("statecode"), body.get("statuscode")
    label = str((raw.get("statuscode") or {}).get(str(status), ""))
    match = re.search(r"\(state (\d+)\)", label)
    if state is not None and match and int(match.group(1)) != state:
        return [f"{entity.logical}: statuscode {status} belongs to state {match.group(1)}, "
                f"not statecode {state}"]
    return []


def body_problems(entity: Entity, body: Any, where: str = "body") -> list[str]:
    if not isinstance(body, dict):
        return [f"{where}: not a JSON object"]
    if entity.attributes is None:
        return []
    problems: list[str] = []
    lookups = entity.lookups()
    for key, value in body.items():
        if key.endswith("@odata.bind"):
            problems += _bind_problems(entity, key, value)
        elif key.startswith("@odata."):
            continue
        elif key in entity.collections():
            target = by_logical(entity.collections()[key])
            if not isinstance(value, list):
                problems.append(f"{key}: a collection navigation takes a list (deep insert)")
            elif target is not None:
                for n, row in enumerate(value):
                    problems += body_problems(target, row, f"{key}[{n}]")
        elif key in lookups or (key.startswith("_") and key.endswith("_value")):
            problems.append(f"{key}: a lookup is written with '<navigation>@odata.bind'")
        elif key not in entity.attributes:
            problems.append(f"{key!r} is not an attribute of {entity.logical}")
        elif entity.attributes[key].get("partyList"):
            problems.append(f"{key!r} is a party list: use {entity.logical}_activity_parties")
        else:
            problems += _value_problems(entity, key, value)
    problems += _state_status_problems(entity, body)
    return [f"{where}: {p}" if not p.startswith(where) else p for p in problems]


def _action_problems(params: dict[str, tuple[type, bool]], body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["action body must be a JSON object"]
    problems = [f"action parameter {k!r} unknown" for k in body if k not in params]
    for name, (kind, required) in params.items():
        if name not in body:
            if required:
                problems.append(f"action parameter {name!r} required")
        elif not isinstance(body[name], kind):
            problems.append(f"action parameter {name}={body[name]!r}: not {kind.__name__}")
    return problems


# --- requests -------------------------------------------------------------------------------------


def request_problems(method: str, url: str, body: Any = None, *, has_body: bool | None = None,
                     headers: dict[str, str] | None = None, content: bytes = b"",
                     inner: bool = False) -> list[str]:
    """Everything wrong with one Dataverse Web API request (absolute URL)."""
    method = method.upper()
    parts = urlsplit(url)
    path = unquote(parts.path)
    has_body = body is not None if has_body is None else has_body
    prefix = f"{method} {url}: "
    if API_PREFIX not in path + "/":
        return [prefix + f"not under {API_PREFIX}"]
    rest = path.split(API_PREFIX, 1)[1] if API_PREFIX in path else ""
    segments = [s for s in rest.split("/") if s]
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not segments:
        return [prefix + "no resource"]
    head = segments[0]
    if head == "$batch":
        if inner:
            return [prefix + "$batch cannot be nested"]
        if method != "POST" or len(segments) > 1:
            return [prefix + "$batch is POST on the service root only"]
        return [prefix + p for p in batch_problems(headers or {}, content)]
    if head in FUNCTIONS:
        problems = [] if method == FUNCTIONS[head] and len(segments) == 1 else \
            [f"{head} is a {FUNCTIONS[head]} function"]
        problems += ["a function takes no body"] if has_body else []
        problems += [f"query option {n!r} not allowed" for n, _ in query]
        return [prefix + p for p in problems]
    match = SEGMENT_RE.match(head)
    if match is None or match.group(1) not in entities():
        return [prefix + f"entity set {head.split('(')[0]!r} is not in the subset or the "
                "documented extras"]
    entity = entities()[match.group(1)]
    key = match.group(2)
    problems: list[str] = []
    if key is not None:
        problems += _key_problems(entity, key)
    if len(segments) > 1:
        problems += _tail_problems(entity, key, segments[1:], method, body, has_body, query)
        return [prefix + p for p in problems]
    kind = "record" if key is not None else "collection"
    allowed = {"record": {"GET", "PATCH", "DELETE"}, "collection": {"GET", "POST"}}[kind]
    if method not in allowed:
        problems.append(f"{method} not allowed on a {kind}")
    options = QUERY_OPTIONS[kind] if method == "GET" else {"$select", "$expand"}
    problems += [f"query option {n!r} not allowed on {method} {kind}" for n, _ in query
                 if n not in options]
    problems += _option_problems(entity, query)
    if method in ("POST", "PATCH"):
        problems += body_problems(entity, body) if has_body else ["a write needs a body"]
    elif has_body:
        problems.append(f"{method} takes no body")
    if headers is not None and has_body:
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if not content_type.startswith("application/json"):
            problems.append(f"body sent as {content_type!r}, not application/json")
    return [prefix + p for p in problems]


def _key_problems(entity: Entity, key: str) -> list[str]:
    if GUID_RE.match(key):
        return []
    if key.startswith("$") and key[1:].isdigit():
        return []  # a Content-ID reference inside a change set
    problems: list[str] = []
    for pair in _split_top(key, ","):
        name, _, value = pair.partition("=")
        if not value:
            return [f"key {key!r}: neither a GUID nor name=value alternate keys"]
        problems += _columns_problems(entity, [name.strip()], "alternate key")
    return problems


def _tail_problems(entity: Entity, key: str | None, tail: list[str], method: str, body: Any,
                   has_body: bool, query: list[tuple[str, str]]) -> list[str]:
    if key is None or len(tail) > 1:
        return [f"unsupported path {'/'.join(tail)!r} after {entity.entity_set}"]
    segment = tail[0]
    action = ACTIONS.get((entity.logical, segment))
    if action is not None:
        problems = [] if method == "POST" else [f"{segment} is an action (POST)"]
        problems += [f"query option {n!r} not allowed" for n, _ in query]
        return problems + _action_problems(action, body if has_body else {})
    if segment in entity.collections() and method == "GET":
        target = by_logical(entity.collections()[segment])
        return _option_problems(target, query) if target is not None else []
    columns = entity.selectable()
    if columns is not None and segment in columns and method in ("GET", "PUT", "DELETE"):
        return []
    return [f"{segment!r} is not an action, collection navigation or column of "
            f"{entity.logical} (for {method})"]


# --- $batch ---------------------------------------------------------------------------------------


def _boundary(content_type: str) -> str | None:
    match = re.search(r'boundary="?([^";\s]+)"?', content_type, re.I)
    return match.group(1) if match else None


def _parts(text: str, boundary: str) -> tuple[list[str], list[str]]:
    """Parts between `--boundary` lines, and framing problems."""
    delimiter = f"--{boundary}"
    problems: list[str] = []
    if f"{delimiter}--" not in text:
        problems.append(f"no closing delimiter {delimiter}--")
    body = text.split(f"{delimiter}--", 1)[0]
    chunks = body.split(delimiter)
    if chunks[0].strip():
        problems.append("text before the first delimiter")
    parts = []
    for chunk in chunks[1:]:
        if not chunk.startswith("\r\n"):
            problems.append("a delimiter line does not end with CRLF")
        parts.append(chunk[2:] if chunk.startswith("\r\n") else chunk)
    return parts, problems


def _head(block: str) -> tuple[dict[str, str], str]:
    head, sep, rest = block.partition("\r\n\r\n")
    if not sep:
        head, rest = block, ""
    headers = {}
    for line in head.split("\r\n"):
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _http_part(block: str, where: str, in_changeset: bool) -> tuple[list[str], str | None]:
    """Problems of one application/http part, and its Content-ID."""
    part_headers, rest = _head(block)
    problems: list[str] = []
    if part_headers.get("content-type") != "application/http":
        problems.append(f"{where}: Content-Type {part_headers.get('content-type')!r}, "
                        "expected application/http")
    if part_headers.get("content-transfer-encoding") != "binary":
        problems.append(f"{where}: Content-Transfer-Encoding must be binary")
    content_id = part_headers.get("content-id")
    if in_changeset and content_id is None:
        problems.append(f"{where}: a change set request needs a Content-ID")
    request_line, _, rest = rest.partition("\r\n")
    words = request_line.split(" ")
    if len(words) != 3 or words[2] != "HTTP/1.1":
        return problems + [f"{where}: request line {request_line!r}"], content_id
    method, url = words[0], words[1]
    headers, payload = _head(rest)
    payload = payload[:-2] if payload.endswith("\r\n") else payload
    if in_changeset and method.upper() == "GET":
        problems.append(f"{where}: a GET cannot be inside a change set")
    body = None
    if payload:
        length = headers.get("content-length")
        if length is not None and int(length) != len(payload.encode("utf-8")):
            problems.append(f"{where}: Content-Length {length} but {len(payload.encode())} "
                            "bytes")
        try:
            body = json.loads(payload)
        except ValueError:
            problems.append(f"{where}: body is not JSON")
    if url.startswith("$"):
        return problems + [f"{where}: $<Content-ID> URLs are not checked here"], content_id
    if not url.startswith("https://"):
        url = "https://batch.invalid" + API_PREFIX + url.lstrip("/")
    problems += [f"{where} {p}" for p in request_problems(
        method, url, body, has_body=bool(payload), headers=headers, inner=True)]
    return problems, content_id


def batch_problems(headers: dict[str, str], content: bytes) -> list[str]:
    """multipart/mixed $batch (execute-batch-operations-using-web-api), then every request."""
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    boundary = _boundary(content_type)
    if not content_type.startswith("multipart/mixed") or boundary is None:
        return [f"Content-Type {content_type!r}: expected multipart/mixed with a boundary"]
    text = content.decode("utf-8")
    parts, problems = _parts(text, boundary)
    count = 0
    for n, part in enumerate(parts):
        part_headers, rest = _head(part)
        inner_type = part_headers.get("content-type", "")
        if inner_type.startswith("multipart/mixed"):
            inner_boundary = _boundary(inner_type)
            if inner_boundary is None:
                problems.append(f"part {n}: change set without boundary")
                continue
            inner_parts, framing = _parts(rest, inner_boundary)
            problems += [f"part {n}: {p}" for p in framing]
            ids: list[str | None] = []
            for m, inner in enumerate(inner_parts):
                if _head(inner)[0].get("content-type", "").startswith("multipart/"):
                    problems.append(f"part {n}.{m}: change sets cannot nest")
                    continue
                found, content_id = _http_part(inner.removesuffix("\r\n"), f"part {n}.{m}",
                                               True)
                problems += found
                ids.append(content_id)
                count += 1
            if len(set(ids)) != len(ids):
                problems.append(f"part {n}: Content-IDs are not unique in the change set")
        else:
            found, _ = _http_part(part.removesuffix("\r\n"), f"part {n}", False)
            problems += found
            count += 1
    if not 1 <= count <= BATCH_LIMIT:
        problems.append(f"$batch holds {count} requests (1..{BATCH_LIMIT} allowed)")
    return problems


def httpx_request_problems(request: httpx.Request) -> list[str]:
    content = request.content
    content_type = request.headers.get("content-type", "")
    body = json.loads(content) if content and content_type.startswith("application/json") \
        else None
    return request_problems(request.method, str(request.url), body, has_body=bool(content),
                            headers=dict(request.headers), content=content)


def assert_request_conforms(request: httpx.Request) -> None:
    """Raise NonConformance listing every problem of an outgoing Dataverse request."""
    problems = httpx_request_problems(request)
    if problems:
        raise NonConformance("; ".join(problems))
