"""Party resolution for a whole cycle: every new address looked up once, in batches.

Looking up each address of each message would cost several Dataverse requests per message;
instead the engine hands over all addresses of a page, unknown ones are matched in one $batch
(one In() query per table per 100 addresses) and the answers, including "nobody", are cached
for the rest of the cycle. The choice among matches is the pure rule in shared.domain.parties.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.dataverse import DataverseClient, DataverseOperation
from shared.domain.addresses import is_internal, normalize_address
from shared.domain.parties import CandidateRecord, PartyResolution, resolve

from .batching import batch_with_retry, in_filter, query_path

CHUNK = 100


@dataclass(frozen=True)
class _Table:
    table: str
    entity_set: str
    key: str
    name: str  # the primary name column: what a record is called
    columns: tuple[str, ...]  # address columns
    extra: tuple[str, ...]

    @property
    def select(self) -> list[str]:
        return [self.key, self.name, *self.columns, *self.extra]


_ADDRESSES = ("emailaddress1", "emailaddress2", "emailaddress3")
TABLES = (
    _Table("systemuser", "systemusers", "systemuserid", "fullname", ("internalemailaddress",),
           ("isdisabled",)),
    _Table("contact", "contacts", "contactid", "fullname", _ADDRESSES,
           ("statecode", "_ownerid_value")),
    _Table("account", "accounts", "accountid", "name", _ADDRESSES,
           ("statecode", "_ownerid_value")),
    _Table("lead", "leads", "leadid", "fullname", _ADDRESSES,
           ("statecode", "_ownerid_value")),
)


class PartyResolver:
    """Per-cycle cache of address -> matching CRM records, filled in batches."""

    def __init__(self, dataverse: DataverseClient, *, owner_systemuser_id: str | None,
                 org_domains: Iterable[str] = (), max_wait: float = 60.0) -> None:
        self.dataverse = dataverse
        self.owner_systemuser_id = owner_systemuser_id
        self.org_domains = tuple(org_domains)
        self.max_wait = max_wait
        self.cache: dict[str, list[CandidateRecord]] = {}

    async def prime(self, addresses: Iterable[str | None]) -> None:
        """Look up every address not cached yet (one $batch for all of them)."""
        unknown = sorted({a for a in (normalize_address(x) for x in addresses) if a}
                         - self.cache.keys())
        if not unknown:
            return
        planned = lookup_operations(unknown, org_domains=self.org_domains)
        results = await batch_with_retry(self.dataverse, [op for _, op in planned],
                                         max_wait=self.max_wait)
        rows: dict[str, list[dict[str, Any]]] = {}
        for (table, _), result in zip(planned, results, strict=True):
            result.raise_for_error()
            rows.setdefault(table, []).extend((result.body or {}).get("value", []))
        self.cache.update(candidates_from(rows, unknown))

    def add(self, address: str, record: CandidateRecord) -> None:
        """Remember a record created during the cycle (automatic record creation)."""
        addr = normalize_address(address) or address
        self.cache.setdefault(addr, []).append(record)

    def known(self, address: str | None) -> bool:
        addr = normalize_address(address)
        return addr is not None and addr in self.cache

    def resolution(self, address: str) -> PartyResolution:
        addr = normalize_address(address) or address
        return resolve(addr, self.cache.get(addr, ()), self.owner_systemuser_id)

    def tables_of(self, address: str | None) -> set[str]:
        """Tables of the active records matching the address (tracking options need it)."""
        addr = normalize_address(address)
        if addr is None:
            return set()
        return {c.table for c in self.cache.get(addr, ()) if c.is_active}

    def resolutions(self, addresses: Iterable[str | None]) -> dict[str, PartyResolution]:
        out: dict[str, PartyResolution] = {}
        for raw in addresses:
            addr = normalize_address(raw)
            if addr and addr not in out:
                out[addr] = self.resolution(addr)
        return out


def lookup_operations(addresses: Iterable[str], *, org_domains: Iterable[str] = ()
                      ) -> list[tuple[str, DataverseOperation]]:
    """GETs (for one $batch) finding every record that carries one of `addresses`: one In()
    query per table per CHUNK addresses. With `org_domains`, users are looked up only for
    the organisation's own addresses."""
    unique = sorted(set(addresses))
    domains = tuple(org_domains)
    planned: list[tuple[str, DataverseOperation]] = []
    for spec in TABLES:
        wanted = unique
        if spec.table == "systemuser" and domains:
            wanted = [a for a in unique if is_internal(a, domains)]
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start:start + CHUNK]
            flt = " or ".join(in_filter(c, chunk) for c in spec.columns)
            planned.append((spec.table, DataverseOperation.get(query_path(
                spec.entity_set, select=spec.select, filter=flt))))
    return planned


def candidates_from(rows_by_table: Mapping[str, Sequence[dict[str, Any]]],
                    addresses: Iterable[str | None]) -> dict[str, list[CandidateRecord]]:
    """Which records carry each (normalised) address, from the rows those GETs returned."""
    found: dict[str, list[CandidateRecord]] = {
        a: [] for a in (normalize_address(x) for x in addresses) if a}
    for spec in TABLES:
        for row in rows_by_table.get(spec.table, ()):
            record = _candidate(spec, row)
            for column in spec.columns:
                addr = normalize_address(row.get(column))
                if addr in found and record not in found[addr]:
                    found[addr].append(record)
    return found


def _candidate(spec: _Table, row: dict[str, Any]) -> CandidateRecord:
    if spec.table == "systemuser":
        active = not row.get("isdisabled")
    else:
        active = row.get("statecode", 0) == 0
    return CandidateRecord(spec.table, str(row[spec.key]), active,
                           row.get("_ownerid_value"), row.get(spec.name))


__all__ = ["TABLES", "PartyResolver", "candidates_from", "lookup_operations"]
