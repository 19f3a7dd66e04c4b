"""Entity metadata for the emulator, read from the project's stripped copy of the Dataverse subset.

Every entity set, column name, Edm type, max length and option value the emulator exposes comes
from tests/specs/dataverse-subset.json, so the emulator can't drift from the spec the client is
written against. Two tables the seed format needs but the spec leaves out (opportunity,
incident) are declared here as minimal extras and flagged `extra=True`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).resolve().parents[2] / "tests" / "specs" / "dataverse-subset.json"

_LOOKUP_RE = re.compile(r"^_(\w+)_value\b")
_PARTY_NAV_RE = re.compile(r"'(\w+_activity_parties)'")
_STATE_RE = re.compile(r"\(state (\d+)\)")
_DEFAULT_STATUS_RE = re.compile(r"default status (\d+)")

# The column whose value names a row (used for FormattedValue annotations on lookups).
PRIMARY_NAME = {
    "contact": "fullname", "account": "name", "lead": "fullname", "systemuser": "fullname",
    "queue": "name", "email": "subject", "appointment": "subject", "task": "subject",
    "activitypointer": "subject", "activityparty": "addressused", "opportunity": "name",
    "incident": "title",
}
ACTIVITIES = ("email", "appointment", "task")


@dataclass
class Attribute:
    """One column as the Web API exposes it (lookups under their `_x_value` name)."""

    logical: str          # attribute logical name (`regardingobjectid`)
    column: str           # Web API property (`_regardingobjectid_value` for lookups)
    edm: str              # Edm.String, Edm.Int32, ... (JSON columns are Edm.String)
    max_length: int | None = None
    options: dict[int, str] | None = None
    lookup: bool = False
    targets: list[str] = field(default_factory=list)


@dataclass
class Entity:
    logical: str
    entity_set: str
    primary_key: str
    columns: dict[str, Attribute]                 # by Web API property name
    attributes: dict[str, Attribute]              # by logical name
    status_state: dict[int, int] = field(default_factory=dict)   # statuscode -> statecode
    default_status: dict[int, int] = field(default_factory=dict)  # statecode -> statuscode
    party_nav: str | None = None                  # email_activity_parties, ...
    extra: bool = False                           # outside the spec subset

    @property
    def primary_name(self) -> str | None:
        name = PRIMARY_NAME.get(self.logical)
        return name if name in self.columns else None

    @property
    def owned(self) -> bool:
        """User-owned tables are subject to record-level (owner/share) security."""
        return "_ownerid_value" in self.columns

    @property
    def is_activity(self) -> bool:
        return self.logical in ACTIVITIES


def _attribute(name: str, raw: dict[str, Any]) -> Attribute | None:
    edm = raw.get("edm")
    if raw.get("partyList") or edm is None:
        return None
    if edm == "JSON":
        edm = "Edm.String"
    options = raw.get("options")
    opts = {int(k): str(v) for k, v in options.items()} if options else None
    web_api = str(raw.get("webApi", ""))
    match = _LOOKUP_RE.match(web_api)
    if match:
        return Attribute(name, f"_{match.group(1)}_value", "Edm.Guid", lookup=True,
                         targets=list(raw.get("targetsPerCdm", [])))
    return Attribute(name, name, edm, raw.get("maxLength"), opts)


def _entity(logical: str, raw: dict[str, Any], *, extra: bool = False) -> Entity | None:
    attrs_raw = raw.get("attributes")
    if not isinstance(attrs_raw, dict):
        return None  # mailbox: documentation pointer only
    attributes: dict[str, Attribute] = {}
    party_nav = None
    for name, spec in attrs_raw.items():
        if spec.get("partyList"):
            found = _PARTY_NAV_RE.search(str(spec.get("webApi", "")))
            party_nav = party_nav or (found.group(1) if found else None)
        attr = _attribute(name, spec)
        if attr is not None:
            attributes[name] = attr
    entity = Entity(logical, raw["entitySet"], raw["primaryKey"],
                    {a.column: a for a in attributes.values()}, attributes,
                    party_nav=party_nav, extra=extra)
    status = attributes.get("statuscode")
    if status and status.options:
        for code, label in status.options.items():
            found = _STATE_RE.search(label)
            if found:
                entity.status_state[code] = int(found.group(1))
    for code, label in (raw.get("statecode") or {}).items():
        found = _DEFAULT_STATUS_RE.search(str(label))
        if found:
            entity.default_status[int(code)] = int(found.group(1))
    for status_code, state in sorted(entity.status_state.items()):
        entity.default_status.setdefault(state, status_code)
    return entity


def _extra_tables() -> dict[str, dict[str, Any]]:
    """Regarding targets the seed uses that the spec subset does not describe (kept minimal)."""
    common = {
        "createdon": {"edm": "Edm.DateTimeOffset"},
        "modifiedon": {"edm": "Edm.DateTimeOffset"},
        "versionnumber": {"edm": "Edm.Int64"},
        "description": {"edm": "Edm.String", "maxLength": 2000},
        "ownerid": {"edm": "Edm.Guid", "webApi": "_ownerid_value (Edm.Guid)"},
        "createdby": {"edm": "Edm.Guid", "webApi": "_createdby_value (Edm.Guid)"},
        "modifiedby": {"edm": "Edm.Guid", "webApi": "_modifiedby_value (Edm.Guid)"},
    }
    return {
        "opportunity": {"entitySet": "opportunities", "primaryKey": "opportunityid", "attributes": {
            **common,
            "opportunityid": {"edm": "Edm.Guid"},
            "name": {"edm": "Edm.String", "maxLength": 300},
            "customerid": {"edm": "Edm.Guid", "webApi": "_customerid_value (Edm.Guid)",
                           "targetsPerCdm": ["account", "contact"]},
            "statecode": {"edm": "Edm.Int32", "options": {"0": "Open", "1": "Won", "2": "Lost"}},
            "statuscode": {"edm": "Edm.Int32", "options": {
                "1": "In Progress (state 0)", "2": "On Hold (state 0)", "3": "Won (state 1)",
                "4": "Canceled (state 2)", "5": "Out-Sold (state 2)"}},
        }},
        "incident": {"entitySet": "incidents", "primaryKey": "incidentid", "attributes": {
            **common,
            "incidentid": {"edm": "Edm.Guid"},
            "title": {"edm": "Edm.String", "maxLength": 200},
            "ticketnumber": {"edm": "Edm.String", "maxLength": 100},
            "customerid": {"edm": "Edm.Guid", "webApi": "_customerid_value (Edm.Guid)",
                           "targetsPerCdm": ["account", "contact"]},
            "statecode": {"edm": "Edm.Int32",
                          "options": {"0": "Active", "1": "Resolved", "2": "Canceled"}},
            "statuscode": {"edm": "Edm.Int32", "options": {
                "1": "In Progress (state 0)", "5": "Problem Solved (state 1)",
                "6": "Canceled (state 2)"}},
        }},
    }


class Metadata:
    """All entities, by logical name and by entity set name."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.by_logical: dict[str, Entity] = {}
        for logical, raw in spec["entities"].items():
            entity = _entity(logical, raw)
            if entity is not None:
                self.by_logical[logical] = entity
        for logical, raw in _extra_tables().items():
            if logical not in self.by_logical:
                entity = _entity(logical, raw, extra=True)
                assert entity is not None
                self.by_logical[logical] = entity
        self.by_set = {e.entity_set: e for e in self.by_logical.values()}

    def entity(self, logical: str) -> Entity:
        return self.by_logical[logical]


@lru_cache(maxsize=4)
def load_metadata(path: str | None = None) -> Metadata:
    spec = json.loads(Path(path or SPEC_PATH).read_text(encoding="utf-8"))
    return Metadata(spec)
