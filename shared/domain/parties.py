"""Which CRM record an email address stands for, and the activityparty rows that say so.

"Wrong party when an address is on several records" is a top complaint about Dynamics, so
the order is explicit: system user (unless the tracking user owns a contact/account/lead
with that address, which then wins), contact, account, lead, queue, other email-enabled
tables. Disabled users are never chosen; other inactive records only when nothing active
matches. An address nobody has stays a plain address (`addressused`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .addresses import normalize_address
from .email_activity import bind_path

MAX_ADDRESS_USED = 200  # activityparty.addressused max length (spec)

# Dynamics' preference among tables; anything not listed ranks after these.
TABLE_ORDER: tuple[str, ...] = ("systemuser", "contact", "account", "lead", "queue")
OWNED_OVERRIDE_TABLES: tuple[str, ...] = ("contact", "account", "lead")


class ParticipationType(IntEnum):
    """activityparty.participationtypemask values used by email (spec)."""

    SENDER = 1
    TO = 2
    CC = 3
    BCC = 4


@dataclass(frozen=True)
class CandidateRecord:
    """A CRM record whose email address matches. Pass them oldest first: ties keep order."""

    table: str
    id: str
    is_active: bool = True
    owner_id: str | None = None
    name: str | None = None
    entity_set: str | None = None  # needed only for tables outside ENTITY_SETS


@dataclass(frozen=True)
class PartyResolution:
    """The chosen record for an address, or table/id None when unresolved."""

    table: str | None
    id: str | None
    address: str
    name: str | None = None
    entity_set: str | None = None

    @property
    def resolved(self) -> bool:
        return self.table is not None and self.id is not None


def _rank(table: str) -> int:
    t = table.lower()
    return TABLE_ORDER.index(t) if t in TABLE_ORDER else len(TABLE_ORDER)


def _same_id(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a.strip("{}").lower() == b.strip("{}").lower()


def resolve(
    address: str,
    candidates: Iterable[CandidateRecord],
    tracking_user_systemuser_id: str | None = None,
) -> PartyResolution:
    """Pick one record for the address in Dynamics' order (see module docstring)."""
    addr = normalize_address(address) or address.strip().lower()
    usable = [c for c in candidates if not (c.table.lower() == "systemuser" and not c.is_active)]

    def pick(records: Sequence[CandidateRecord]) -> CandidateRecord | None:
        if not records:
            return None
        def owned(c: CandidateRecord) -> bool:
            return c.table.lower() in OWNED_OVERRIDE_TABLES and _same_id(
                c.owner_id, tracking_user_systemuser_id
            )

        mine = [c for c in records if owned(c)]
        if mine and any(c.table.lower() == "systemuser" for c in records):
            # The tracking user's own record for a colleague beats the colleague's user row.
            return min(mine, key=lambda c: _rank(c.table))
        # Within a table the user's own record first, then the caller's order (min is stable).
        return min(records, key=lambda c: (_rank(c.table), not owned(c)))

    chosen = pick([c for c in usable if c.is_active]) or pick(usable)
    if chosen is None:
        return PartyResolution(None, None, addr)
    return PartyResolution(
        chosen.table.lower(), chosen.id, addr, chosen.name, chosen.entity_set
    )


def party_row(
    address: str,
    participation: ParticipationType,
    resolution: PartyResolution | None = None,
) -> dict[str, Any]:
    """One activityparty deep-insert dict: mask, addressused, and the partyid bind if any."""
    addr = normalize_address(address) or address.strip()
    row: dict[str, Any] = {
        "participationtypemask": int(participation),
        "addressused": addr[:MAX_ADDRESS_USED],
    }
    if resolution is not None and resolution.resolved:
        table = resolution.table or ""
        try:
            path = bind_path(table, resolution.id or "", resolution.entity_set)
        except ValueError:
            # A table without a known entity set cannot be bound; keeping the plain address
            # still records the email rather than failing the whole create.
            return row
        row[f"partyid_{table}@odata.bind"] = path
    return row


def build_activity_parties(
    sender: str | None,
    to: Iterable[str] = (),
    cc: Iterable[str] = (),
    bcc: Iterable[str] = (),
    resolutions: Mapping[str, PartyResolution] | None = None,
) -> list[dict[str, Any]]:
    """The `email_activity_parties` list: sender, then To, Cc, Bcc, each address once per role.

    `resolutions` is keyed by normalised address; a missing key means unresolved.
    """
    resolutions = resolutions or {}
    rows: list[dict[str, Any]] = []
    groups: list[tuple[ParticipationType, Iterable[str]]] = [
        (ParticipationType.SENDER, [sender] if sender else []),
        (ParticipationType.TO, to),
        (ParticipationType.CC, cc),
        (ParticipationType.BCC, bcc),
    ]
    for participation, addresses in groups:
        seen: set[str] = set()
        for raw in addresses:
            addr = normalize_address(raw)
            if addr is None or addr in seen:
                continue
            seen.add(addr)
            rows.append(party_row(addr, participation, resolutions.get(addr)))
    return rows


__all__ = [
    "OWNED_OVERRIDE_TABLES",
    "TABLE_ORDER",
    "CandidateRecord",
    "ParticipationType",
    "PartyResolution",
    "build_activity_parties",
    "party_row",
    "resolve",
]
