"""The emulated CRM's tables: rows, row versions, ownership, sharing and field security.

Rows are plain dicts keyed by Web API property name (`_x_value` for lookups) holding only the
values that were set; `@lookup` remembers which table each lookup points at. Writes go through
`insert`/`replace`/`remove` so a change set can be rolled back from the journal, and so the hash
indexes (messageid, email addresses, party links) stay exact for thousands of rows.
"""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sandbox.dataverse.metadata import ACTIVITIES, Entity, Metadata, load_metadata
from sandbox.dataverse.odata_filter import normalize

if TYPE_CHECKING:
    from sandbox.world import SandboxUser, World

ROOT_BUSINESS_UNIT = "b0000000-0000-4000-8000-0000000000b1"
ORGANIZATION_ID = "0f000000-0000-4000-8000-000000000001"
APP_USER_NAMESPACE = uuid.UUID("6f3c1c1e-52b0-4c8b-9a51-7d2b8f1d0a11")

INDEXED = {
    "email": ("messageid", "_regardingobjectid_value", "_parentactivityid_value"),
    "appointment": ("_regardingobjectid_value",),
    "task": ("_regardingobjectid_value",),
    "contact": ("emailaddress1", "emailaddress2", "emailaddress3"),
    "account": ("emailaddress1", "emailaddress2", "emailaddress3"),
    "lead": ("emailaddress1", "emailaddress2", "emailaddress3"),
    "systemuser": ("internalemailaddress", "azureactivedirectoryobjectid"),
    "queue": ("emailaddress",),
    "activityparty": ("_activityid_value", "_partyid_value", "addressused"),
}
# Seed keys under "crm" -> table logical name.
SEED_TABLES = {
    "contacts": "contact", "accounts": "account", "leads": "lead", "opportunities": "opportunity",
    "incidents": "incident", "queues": "queue", "emails": "email", "appointments": "appointment",
    "tasks": "task",
}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Caller:
    """Who a request acts as: a user (maybe impersonated), or the application user itself."""

    systemuser_id: str
    user: SandboxUser | None = None         # None: the application user, full access
    on_behalf_of: str | None = None         # the real caller's systemuserid when impersonating
    fault_key: str | None = None

    @property
    def reads_all(self) -> bool:
        return self.user is None or self.user.crm_read_scope == "organization"

    def field_allowed(self, logical: str, column: str) -> bool:
        return self.user is None or f"{logical}.{column}" in self.user.field_access


class Table:
    """One entity's rows plus hash indexes on the columns lookups by value need."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.rows: dict[str, dict[str, Any]] = {}
        self.indexed = INDEXED.get(entity.logical, ())
        self.index: dict[str, dict[Any, set[str]]] = {c: defaultdict(set) for c in self.indexed}

    def _key(self, column: str, value: Any) -> Any:
        return normalize(value, self.entity.columns[column].edm)

    def add(self, row_id: str, row: dict[str, Any]) -> None:
        self.rows[row_id] = row
        for column in self.indexed:
            value = row.get(column)
            if value is not None:
                self.index[column][self._key(column, value)].add(row_id)

    def discard(self, row_id: str) -> dict[str, Any] | None:
        row = self.rows.pop(row_id, None)
        if row is not None:
            for column in self.indexed:
                value = row.get(column)
                if value is not None:
                    bucket = self.index[column].get(self._key(column, value))
                    if bucket is not None:
                        bucket.discard(row_id)
        return row

    def lookup(self, column: str, keys: list[Any]) -> set[str] | None:
        """Ids whose column equals one of keys (already normalized), or None if not indexed."""
        if column not in self.index:
            return None
        found: set[str] = set()
        for key in keys:
            found |= self.index[column].get(key, set())
        return found


class CrmStore:
    """All tables of the emulated organisation, built from the world and its seed."""

    def __init__(self, world: World, metadata: Metadata | None = None) -> None:
        self.world = world
        self.md = metadata or load_metadata()
        self.tables = {logical: Table(entity) for logical, entity in self.md.by_logical.items()
                       if logical != "activitypointer"}
        self.shares: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.secured: dict[str, set[str]] = defaultdict(set)
        self.version = 1_000_000
        self.journal: list[tuple[str, str, dict[str, Any] | None]] | None = None
        self.share_journal: dict[tuple[str, str], set[str]] | None = None
        self.app_users: dict[str, str] = {}  # client id -> systemuserid
        self.tracking_counter = 1000
        self._load_users()

    # --- identities ---------------------------------------------------------------------------

    def _load_users(self) -> None:
        """Every Entra user is a systemuser; every Dataverse-enabled app is an application user."""
        for user in self.world.users.values():
            first, _, last = user.display_name.partition(" ")
            self.insert("systemuser", self.stamp("systemuser", {
                "systemuserid": user.systemuser_id,
                "azureactivedirectoryobjectid": user.object_id,
                "internalemailaddress": user.upn,
                "domainname": user.upn,
                "fullname": user.display_name,
                "firstname": first or None,
                "lastname": last or None,
                "isdisabled": user.disabled,
                "_businessunitid_value": user.business_unit_id,
                "accessmode": 0,
                "@lookup": {"_businessunitid_value": "businessunit"},
            }))
        for app in self.world.apps.values():
            if not app.dataverse_application_user:
                continue
            sid = str(uuid.uuid5(APP_USER_NAMESPACE, app.client_id))
            self.app_users[app.client_id] = sid
            self.insert("systemuser", self.stamp("systemuser", {
                "systemuserid": sid,
                "azureactivedirectoryobjectid": app.object_id,
                "applicationid": app.client_id,
                "fullname": f"# {app.display_name}",
                "isdisabled": False,
                "accessmode": 4,
                "_businessunitid_value": ROOT_BUSINESS_UNIT,
                "@lookup": {"_businessunitid_value": "businessunit"},
            }))

    def business_unit_of(self, systemuser_id: str) -> str:
        row = self.tables["systemuser"].rows.get(systemuser_id)
        return str(row.get("_businessunitid_value")) if row else ROOT_BUSINESS_UNIT

    def app_caller(self, client_id: str | None = None) -> Caller:
        sid = self.app_users.get(client_id or "") or next(iter(self.app_users.values()), "")
        return Caller(sid)

    # --- journal (change sets) ----------------------------------------------------------------

    def begin(self) -> None:
        self.journal = []
        self.share_journal = {}

    def commit(self) -> None:
        self.journal = None
        self.share_journal = None

    def rollback(self) -> None:
        """Undo every write since `begin`, newest first."""
        journal, shares = self.journal or [], self.share_journal or {}
        self.journal = None
        self.share_journal = None
        for logical, row_id, before in reversed(journal):
            table = self.tables[logical]
            table.discard(row_id)
            if before is not None:
                table.add(row_id, before)
        for key, before in shares.items():
            self.shares[key] = before

    def _log(self, logical: str, row_id: str) -> None:
        if self.journal is not None:
            before = self.tables[logical].rows.get(row_id)
            self.journal.append((logical, row_id, copy.deepcopy(before)))

    # --- primitive writes ---------------------------------------------------------------------

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def stamp(self, logical: str, row: dict[str, Any]) -> dict[str, Any]:
        """Set the row version (and modifiedon) the way every Dataverse write does."""
        columns = self.md.by_logical[logical].columns
        if "versionnumber" in columns:
            row["versionnumber"] = self.next_version()
        else:
            row["@version"] = self.next_version()
        now = utc_now()
        if "createdon" in columns:
            row.setdefault("createdon", now)
        if "modifiedon" in columns:
            row["modifiedon"] = now
        return row

    def insert(self, logical: str, row: dict[str, Any]) -> str:
        entity = self.md.by_logical[logical]
        row_id = str(row[entity.primary_key]).lower()
        row[entity.primary_key] = row_id
        self._log(logical, row_id)
        self.tables[logical].add(row_id, row)
        return row_id

    def replace(self, logical: str, row_id: str, row: dict[str, Any]) -> None:
        self._log(logical, row_id)
        table = self.tables[logical]
        table.discard(row_id)
        table.add(row_id, row)

    def remove(self, logical: str, row_id: str) -> None:
        self._log(logical, row_id)
        self.tables[logical].discard(row_id)
        if logical in ACTIVITIES:
            for party_id in list(self.parties_of(row_id)):
                self.remove("activityparty", party_id)
        key = (logical, row_id)
        if key in self.shares:
            self.set_shares(logical, row_id, set())

    def set_shares(self, logical: str, row_id: str, users: set[str]) -> None:
        key = (logical, row_id)
        if self.share_journal is not None and key not in self.share_journal:
            self.share_journal[key] = set(self.shares.get(key, set()))
        self.shares[key] = set(users)

    # --- reads --------------------------------------------------------------------------------

    def row(self, logical: str, row_id: str) -> dict[str, Any] | None:
        if logical == "activitypointer":
            for activity in ACTIVITIES:
                found = self.tables[activity].rows.get(row_id.lower())
                if found is not None:
                    return self.pointer_row(activity, found)
            return None
        return self.tables[logical].rows.get(row_id.lower())

    def parties_of(self, activity_id: str) -> list[str]:
        table = self.tables["activityparty"]
        ids = table.lookup("_activityid_value", [activity_id.lower()]) or set()
        return sorted(ids, key=lambda pid: table.rows[pid].get("@order", 0))

    def pointer_row(self, activity: str, row: dict[str, Any]) -> dict[str, Any]:
        """An activity seen through the activitypointer table (its shared columns only)."""
        columns = self.md.by_logical["activitypointer"].columns
        view = {k: v for k, v in row.items() if k in columns or k.startswith("@")}
        view["activitytypecode"] = activity
        return view

    def rows_of(self, logical: str) -> list[dict[str, Any]]:
        if logical == "activitypointer":
            return [self.pointer_row(a, r) for a in ACTIVITIES
                    for r in self.tables[a].rows.values()]
        return list(self.tables[logical].rows.values())

    def etag(self, row: dict[str, Any]) -> str:
        return f'W/"{row.get("versionnumber") or row.get("@version")}"'

    # --- security -----------------------------------------------------------------------------

    def visible(self, logical: str, row: dict[str, Any], caller: Caller) -> bool:
        """Record-level read access: organisation scope reads all; user scope own + shared."""
        if caller.reads_all:
            return True
        if logical == "activityparty":
            parent_type = row.get("@lookup", {}).get("_activityid_value")
            parent_id = row.get("_activityid_value")
            parent = self.row(parent_type, parent_id) if parent_type and parent_id else None
            return parent is not None and self.visible(parent_type, parent, caller)
        entity = self.md.by_logical[logical]
        if not entity.owned:
            return True
        if row.get("_ownerid_value") == caller.systemuser_id:
            return True
        row_id = str(row.get(entity.primary_key))
        source = row.get("activitytypecode") if logical == "activitypointer" else logical
        return caller.systemuser_id in self.shares.get((str(source), row_id), ())

    def hidden_columns(self, logical: str, caller: Caller) -> set[str]:
        """Secured columns this caller may not read (they come back null)."""
        if caller.user is None:
            return set()
        return {c for c in self.secured.get(logical, ()) if not caller.field_allowed(logical, c)}

    def masked(self, row: dict[str, Any], hidden: set[str]) -> dict[str, Any]:
        if not hidden:
            return row
        return {k: v for k, v in row.items() if k not in hidden}

    # --- seed ---------------------------------------------------------------------------------

    def load_seed(self, seed: dict[str, Any]) -> None:
        """Load `crm` rows (with `owner`/`shared_with`) and field security from a seed."""
        from sandbox.dataverse.writes import create_record

        crm = seed.get("crm", {}) or {}
        for rule in crm.get("field_security", []):
            self.secured[str(rule["table"]).lower()].add(str(rule["column"]).lower())
        for key, logical in SEED_TABLES.items():
            for raw in crm.get(key, []):
                record = dict(raw)
                owner = record.pop("owner", None)
                shared = record.pop("shared_with", [])
                if "parties" in record:
                    nav = self.md.by_logical[logical].party_nav
                    record[nav or "parties"] = record.pop("parties")
                caller = self.app_caller()
                if owner:
                    user = self.world.user(str(owner))
                    if user is None:
                        raise ValueError(f"seed: unknown owner {owner!r}")
                    caller = Caller(user.systemuser_id)
                row_id = create_record(self, logical, record, caller, system=True)
                if shared:
                    users = set()
                    for who in shared:
                        user = self.world.user(str(who))
                        if user is None:
                            raise ValueError(f"seed: unknown user in shared_with: {who!r}")
                        users.add(user.systemuser_id)
                    self.set_shares(logical, row_id, users)

    def next_tracking_token(self) -> str:
        self.tracking_counter += 1
        return f"CRM:{self.tracking_counter:07d}"
