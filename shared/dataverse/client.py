"""DataverseClient: the Dataverse Web API calls the sync engines make, over one httpx client.

Background sync runs as an application user that impersonates the mailbox owner
(`CallerObjectId`), so the owner's record and field security decide what is read and written:
`impersonate()` hands out a view of the same client (same connections, same token cache) with
that header set. Creates are POSTs and are never resent after an ambiguous failure; callers who
need a retryable create use `upsert` with an id they chose, which is naturally idempotent.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from shared.dataverse.batch import (
    BATCH_LIMIT,
    DataverseOperation,
    DataverseResult,
    RawResponse,
    build_batch,
    entity_id_of,
    parse_batch_response,
)
from shared.dataverse.errors import SERVICE, dataverse_error, dataverse_error_from
from shared.errors import ErrorKind, UpstreamError
from shared.http.retry import (
    IDEMPOTENT_METHODS,
    RetryPolicy,
)
from shared.http.service import DEFAULT_TIMEOUT, Hooks, ServiceClient

log = logging.getLogger("sss.dataverse")

# Each address costs a few dozen characters of $filter; keep URLs well under Dataverse's limit.
ADDRESS_CHUNK = 40
_ANY_ERROR = tuple(range(400, 600))

# The class has a `list` method; these aliases keep annotations inside it unambiguous.
Rows = list[dict[str, Any]]
Results = list[DataverseResult]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _record(entity_set: str, record_id: str) -> str:
    """`accounts(<guid>)`; an alternate key expression (`key='v'`) passes through as is."""
    return f"{entity_set}({record_id})"


class DataverseClient(ServiceClient):
    """Dataverse Web API (`.../api/data/v9.2`) as the application user or an impersonated user."""

    service = SERVICE
    default_headers = {"Accept": "application/json", "OData-MaxVersion": "4.0",
                       "OData-Version": "4.0"}

    def __init__(
        self,
        api_url: str,
        auth: httpx.Auth | None,
        *,
        caller_object_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        event_hooks: Hooks | None = None,
        page_size: int = 100,
        share: DataverseClient | None = None,
    ) -> None:
        super().__init__(api_url, auth, transport=transport, timeout=timeout, retry=retry,
                         event_hooks=event_hooks, page_size=page_size, share=share)
        self.caller_object_id = caller_object_id

    @property
    def api_url(self) -> str:
        return self.base_url

    def impersonate(self, object_id: str) -> DataverseClient:
        """The same client acting as the user with this Entra object id (`CallerObjectId`)."""
        return DataverseClient(self.api_url, None, caller_object_id=object_id,
                               page_size=self.page_size, share=self)

    def map_error(self, response: httpx.Response) -> UpstreamError:
        return dataverse_error(response)

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.caller_object_id:
            headers["CallerObjectId"] = self.caller_object_id
        headers.update(extra or {})
        return headers

    # --- reads --------------------------------------------------------------------------------

    async def whoami(self) -> dict[str, Any]:
        """`{UserId, BusinessUnitId, OrganizationId}` of the acting (impersonated) user."""
        return self._json(await self._send("GET", "WhoAmI"))

    async def list(
        self,
        entity_set: str,
        *,
        select: Sequence[str] | None = None,
        filter: str | None = None,
        orderby: str | Sequence[str] | None = None,
        expand: str | None = None,
        top: int | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Rows across `@odata.nextLink` pages. With `top` Dataverse does not page, so no
        page size is asked for."""
        params: dict[str, Any] = {}
        if select:
            params["$select"] = ",".join(select)
        if filter:
            params["$filter"] = filter
        if orderby:
            params["$orderby"] = orderby if isinstance(orderby, str) else ",".join(orderby)
        if expand:
            params["$expand"] = expand
        if top:
            params["$top"] = top
        headers = {} if top else {"Prefer": f"odata.maxpagesize={page_size or self.page_size}"}
        async for row in self._pages(entity_set, params, headers=headers):
            yield row

    async def get(self, entity_set: str, record_id: str, *,
                  select: Sequence[str] | None = None, expand: str | None = None
                  ) -> dict[str, Any] | None:
        """One record, or None when it does not exist (or the user may not see it)."""
        params: dict[str, Any] = {}
        if select:
            params["$select"] = ",".join(select)
        if expand:
            params["$expand"] = expand
        response = await self._send("GET", _record(entity_set, record_id), params=params,
                                    ok=(404,))
        return None if response.status_code == 404 else self._json(response)

    async def find_by_addresses(
        self,
        entity_set: str,
        columns: Sequence[str],
        addresses: Sequence[str],
        *,
        select: Sequence[str] | None = None,
        filter: str | None = None,
        chunk_size: int = ADDRESS_CHUNK,
    ) -> Rows:
        """Rows whose any of `columns` equals one of `addresses` (case-insensitive, as
        Dataverse compares strings): party resolution in a few calls instead of one per
        address."""
        unique = sorted({a.strip().lower() for a in addresses if a and a.strip()})
        rows: Rows = []
        seen: set[str] = set()
        for start in range(0, len(unique), chunk_size):
            chunk = unique[start:start + chunk_size]
            values = ",".join(_literal(a) for a in chunk)
            clauses = [f"Microsoft.Dynamics.CRM.In(PropertyName={_literal(c)},"
                       f"PropertyValues=[{values}])" for c in columns]
            query = " or ".join(clauses)
            if filter:
                query = f"({query}) and ({filter})"
            async for row in self.list(entity_set, select=select, filter=query):
                key = json.dumps(row, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
        return rows

    # --- writes -------------------------------------------------------------------------------

    async def create(self, entity_set: str, body: Mapping[str, Any], *,
                     return_representation: bool = False) -> Any:
        """Create a record; returns its id (or the record with `return_representation`)."""
        headers = {"Prefer": "return=representation"} if return_representation else None
        response = await self._send("POST", entity_set, json_body=dict(body), headers=headers)
        if return_representation:
            return self._json(response)
        record_id = entity_id_of(response.headers.get("OData-EntityId", ""))
        if record_id is None:
            raise UpstreamError("dataverse create answered without OData-EntityId",
                                kind=ErrorKind.PERMANENT, status=response.status_code,
                                service=SERVICE)
        return record_id

    async def update(self, entity_set: str, record_id: str, body: Mapping[str, Any], *,
                     etag: str | None = None) -> None:
        """Update an existing record (never creates: `If-Match: *` without an etag). A stale
        `etag` raises a conflict."""
        await self._send("PATCH", _record(entity_set, record_id), json_body=dict(body),
                         headers={"If-Match": etag or "*"})

    async def upsert(self, entity_set: str, record_id: str, body: Mapping[str, Any], *,
                     only_create: bool = False) -> None:
        """Create or update the record with this id; `only_create` refuses to overwrite
        (conflict if it exists). Idempotent, so safe to resend."""
        headers = {"If-None-Match": "*"} if only_create else None
        await self._send("PATCH", _record(entity_set, record_id), json_body=dict(body),
                         headers=headers)

    async def delete(self, entity_set: str, record_id: str, *, etag: str | None = None) -> None:
        """Delete; already gone counts as done."""
        headers = {"If-Match": etag} if etag else None
        await self._send("DELETE", _record(entity_set, record_id), headers=headers, ok=(404,))

    async def execute(self, action_path: str, body: Mapping[str, Any] | None = None, *,
                      safe: bool = False) -> dict[str, Any] | None:
        """Call a bound or unbound action, e.g. `emails(<id>)/Microsoft.Dynamics.CRM.SendEmail`.
        Resent after ambiguous failures only if the caller says it is `safe`."""
        response = await self._send("POST", action_path, json_body=dict(body or {}), safe=safe)
        return None if response.status_code == 204 or not response.content else \
            self._json(response)

    # --- $batch -------------------------------------------------------------------------------

    async def batch(self, operations: Sequence[DataverseOperation], *, atomic: bool = False
                    ) -> Results:
        """Run operations in $batch calls of at most 1,000; results in operation order.

        `atomic` puts the writes in one change set: all succeed or none does (so it cannot be
        split, and more than 1,000 operations is an error). Otherwise every operation runs
        (`odata.continue-on-error`) and each result carries its own error.
        """
        if atomic and len(operations) > BATCH_LIMIT:
            raise ValueError(f"an atomic batch holds at most {BATCH_LIMIT} operations")
        results: Results = []
        for start in range(0, len(operations), BATCH_LIMIT):
            chunk = operations[start:start + BATCH_LIMIT]
            results += await self._batch_chunk(chunk, atomic)
        return results

    async def _batch_chunk(self, chunk: Sequence[DataverseOperation], atomic: bool
                           ) -> Results:
        content_type, body = build_batch(chunk, self.api_url, atomic=atomic,
                                         headers=self._headers())
        headers = {"Content-Type": content_type}
        if not atomic:
            headers["Prefer"] = "odata.continue-on-error"
        safe = all(op.method.upper() in IDEMPOTENT_METHODS for op in chunk)
        # Without continue-on-error (a change set) Dataverse answers the batch with the
        # failure's status but still a multipart body: parse it rather than raise.
        response = await self._send("POST", "$batch", content=body, headers=headers,
                                    safe=safe, operations=len(chunk), ok=_ANY_ERROR)
        content_type = response.headers.get("content-type", "")
        if response.status_code >= 400 and not content_type.lower().startswith("multipart/"):
            raise dataverse_error(response)
        groups = parse_batch_response(content_type, response.content)
        if atomic:
            writes = [i for i, op in enumerate(chunk) if op.method.upper() != "GET"]
            reads = [i for i, op in enumerate(chunk) if op.method.upper() == "GET"]
            slots = ([writes] if writes else []) + [[i] for i in reads]
        else:
            slots = [[i] for i in range(len(chunk))]
        results: builtins.list[DataverseResult | None] = [None] * len(chunk)
        for indexes, group in zip(slots, groups, strict=False):
            if len(group) == 1 and len(indexes) > 1:  # a failed change set answers once
                failed = group[0]
                for i in indexes:
                    results[i] = self._result(failed.status, failed.headers, failed.body)
                continue
            by_content_id = {raw.content_id: raw for raw in group if raw.content_id}
            for position, i in enumerate(indexes):
                raw: RawResponse | None = (by_content_id.get(str(position + 1)) if atomic
                                            else None)
                if raw is None and position < len(group):
                    raw = group[position]
                if raw is not None:
                    results[i] = self._result(raw.status, raw.headers, raw.body)
        return [r or DataverseResult(0, {}, None, UpstreamError(
            "dataverse batch operation not executed", kind=ErrorKind.TRANSIENT,
            service=SERVICE)) for r in results]

    @staticmethod
    def _result(status: int, headers: dict[str, str], body: Any) -> DataverseResult:
        error = dataverse_error_from(status, headers, body) if status >= 400 or status == 0 \
            else None
        return DataverseResult(status, headers, body, error)


__all__ = ["DataverseClient", "DataverseOperation", "DataverseResult"]
