"""GraphClient: the Microsoft Graph calls the sync engines make, over one httpx.AsyncClient.

Every request asks for immutable ids (`Prefer: IdType="ImmutableId"`) so an item keeps its id
when it moves between folders, which is what our link rows key on. Paging is hidden by
`list_*`; delta is exposed page by page because the caller must persist each page's cursor
before asking for the next (a crash then resumes mid-backlog instead of starting over).
Throttling is absorbed by the shared retry loop, and `$batch` retries only the inner requests
that were throttled.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import ErrorKind, UpstreamError
from shared.graph.errors import SERVICE, graph_error, graph_error_from
from shared.http.retry import (
    IDEMPOTENT_METHODS,
    REFUSED_STATUSES,
)
from shared.http.service import ServiceClient

log = logging.getLogger("sss.graph")

IMMUTABLE_IDS = 'IdType="ImmutableId"'
BATCH_LIMIT = 20  # learn.microsoft.com/graph/json-batching#batch-size-limitations



@dataclass
class DeltaPage:
    """One page of a delta round. Persist `next_link` (or, at the end, `delta_link`) only
    after the page's items are durably handled."""

    items: list[dict[str, Any]]
    removed: list[str]
    next_link: str | None = None
    delta_link: str | None = None

    @property
    def link(self) -> str | None:
        """The cursor to persist after this page."""
        return self.next_link or self.delta_link


@dataclass
class BatchRequest:
    """One request inside a JSON $batch; `url` is relative to the version, e.g. /users/x/..."""

    method: str
    url: str
    body: Any = None
    headers: dict[str, str] | None = None
    id: str | None = None
    depends_on: list[str] | None = None
    safe: bool | None = None  # resendable; default: idempotent methods only


@dataclass
class BatchResponse:
    id: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: UpstreamError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> BatchResponse:
        if self.error is not None:
            raise self.error
        return self


def _seg(value: str) -> str:
    """One path segment: ids are URL-safe base64, UPNs keep their @."""
    return quote(value, safe="@=")


def _u(user: str) -> str:
    return f"/users/{_seg(user)}"


def _odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _select(select: Sequence[str] | None) -> dict[str, str]:
    return {"$select": ",".join(select)} if select else {}


class GraphClient(ServiceClient):
    """Microsoft Graph for app-only (any mailbox) or on-behalf-of (the user's own) calls."""

    service = SERVICE
    default_headers = {"Accept": "application/json", "Prefer": IMMUTABLE_IDS}

    def map_error(self, response: httpx.Response) -> UpstreamError:
        return graph_error(response)

    @staticmethod
    def _prefer(page_size: int | None = None) -> dict[str, str]:
        value = IMMUTABLE_IDS
        if page_size:
            value += f", odata.maxpagesize={int(page_size)}"
        return {"Prefer": value}

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None
                       ) -> dict[str, Any]:
        """GET any Graph path (relative to the version) as JSON: an escape hatch for probes."""
        return self._json(await self._send("GET", path, params=params))

    def _list(self, path: str, params: Mapping[str, Any] | None = None, *,
              page_size: int | None = None, limit: int | None = None
              ) -> AsyncIterator[dict[str, Any]]:
        """Items of a collection across pages, asking for immutable ids and a page size."""
        return self._pages(path, params, headers=self._prefer(page_size), limit=limit)

    # --- users and folders -------------------------------------------------------------------

    async def get_mailbox_settings(self, user: str) -> dict[str, Any]:
        return self._json(await self._send("GET", f"{_u(user)}/mailboxSettings"))

    async def get_mail_folder(self, user: str, folder: str) -> dict[str, Any]:
        """A folder by id or well-known name (inbox, sentitems, drafts, ...)."""
        return self._json(await self._send("GET", f"{_u(user)}/mailFolders/{_seg(folder)}"))

    def list_child_folders(self, user: str, folder: str, *,
                           select: Sequence[str] | None = None) -> AsyncIterator[dict[str, Any]]:
        return self._list(f"{_u(user)}/mailFolders/{_seg(folder)}/childFolders",
                           _select(select), page_size=self.page_size)

    # --- delta --------------------------------------------------------------------------------

    async def _delta(self, path: str, params: Mapping[str, Any], *, link: str | None,
                     page_size: int | None) -> AsyncIterator[DeltaPage]:
        """One delta round, page by page: from `link` (a persisted next or delta link) or from
        the start. The round ends with the page that carries the delta link."""
        url: str = link or path
        query: Mapping[str, Any] | None = None if link else params
        size = page_size or self.page_size
        while True:
            body = self._json(await self._send("GET", url, params=query,
                                               headers=self._prefer(size)))
            items: list[dict[str, Any]] = []
            removed: list[str] = []
            for item in body.get("value", []):
                if "@removed" in item:
                    removed.append(str(item.get("id")))
                else:
                    items.append(item)
            page = DeltaPage(items, removed, body.get("@odata.nextLink"),
                             body.get("@odata.deltaLink"))
            yield page
            if not page.next_link:
                if not page.delta_link:
                    raise UpstreamError("graph delta page without next or delta link",
                                        kind=ErrorKind.TRANSIENT, service=SERVICE)
                return
            url, query = page.next_link, None

    def delta_messages(self, user: str, folder: str, *, link: str | None = None,
                       select: Sequence[str] | None = None, page_size: int | None = None
                       ) -> AsyncIterator[DeltaPage]:
        """Messages added, changed or removed in one folder since `link`."""
        return self._delta(f"{_u(user)}/mailFolders/{_seg(folder)}/messages/delta",
                           _select(select), link=link, page_size=page_size)

    def delta_events(self, user: str, *, start: str, end: str, link: str | None = None,
                     page_size: int | None = None) -> AsyncIterator[DeltaPage]:
        """Events of the calendar view [start, end) changed since `link` (ISO 8601 times)."""
        return self._delta(f"{_u(user)}/calendarView/delta",
                           {"startDateTime": start, "endDateTime": end},
                           link=link, page_size=page_size)

    def delta_contacts(self, user: str, folder: str | None = None, *, link: str | None = None,
                       select: Sequence[str] | None = None, page_size: int | None = None
                       ) -> AsyncIterator[DeltaPage]:
        path = (f"{_u(user)}/contactFolders/{_seg(folder)}/contacts/delta" if folder
                else f"{_u(user)}/contacts/delta")
        return self._delta(path, _select(select), link=link, page_size=page_size)

    def delta_tasks(self, user: str, list_id: str, *, link: str | None = None,
                    page_size: int | None = None) -> AsyncIterator[DeltaPage]:
        return self._delta(f"{_u(user)}/todo/lists/{_seg(list_id)}/tasks/delta", {},
                           link=link, page_size=page_size)

    # --- messages -----------------------------------------------------------------------------

    async def get_message(self, user: str, message_id: str, *,
                          select: Sequence[str] | None = None, expand: str | None = None
                          ) -> dict[str, Any]:
        params = _select(select)
        if expand:
            params["$expand"] = expand
        return self._json(await self._send(
            "GET", f"{_u(user)}/messages/{_seg(message_id)}", params=params))

    def list_messages(self, user: str, folder: str | None = None, *,
                      filter: str | None = None, select: Sequence[str] | None = None,
                      orderby: str | None = None, top: int | None = None
                      ) -> AsyncIterator[dict[str, Any]]:
        """Messages of a folder (or the whole mailbox); `top` caps the total returned."""
        path = (f"{_u(user)}/mailFolders/{_seg(folder)}/messages" if folder
                else f"{_u(user)}/messages")
        params: dict[str, Any] = _select(select)
        if filter:
            params["$filter"] = filter
        if orderby:
            params["$orderby"] = orderby
        if top:
            params["$top"] = min(top, self.page_size)
        return self._list(path, params, limit=top)

    async def update_message(self, user: str, message_id: str, patch: Mapping[str, Any]
                             ) -> dict[str, Any]:
        return self._json(await self._send(
            "PATCH", f"{_u(user)}/messages/{_seg(message_id)}", json_body=dict(patch)))

    async def move_message(self, user: str, message_id: str, destination: str
                           ) -> dict[str, Any]:
        # With immutable ids a repeated move to the same folder is harmless: safe to resend.
        return self._json(await self._send(
            "POST", f"{_u(user)}/messages/{_seg(message_id)}/move",
            json_body={"destinationId": destination}, safe=True))

    async def delete_message(self, user: str, message_id: str) -> None:
        await self._send("DELETE", f"{_u(user)}/messages/{_seg(message_id)}", ok=(404,))

    async def send_mail(self, user: str, message: Mapping[str, Any], *,
                        save_to_sent_items: bool = True) -> None:
        """Send in one call (202). Not resent after a dropped connection: the engine's
        idempotency layer looks for the sent copy first."""
        await self._send("POST", f"{_u(user)}/sendMail",
                         json_body={"message": dict(message),
                                    "saveToSentItems": save_to_sent_items})

    async def create_draft(self, user: str, message: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(await self._send("POST", f"{_u(user)}/messages",
                                           json_body=dict(message)))

    async def send_draft(self, user: str, message_id: str) -> None:
        await self._send("POST", f"{_u(user)}/messages/{_seg(message_id)}/send")

    async def find_sent_message_by_marker(self, user: str, property_id: str, value: str, *,
                                          select: Sequence[str] | None = None
                                          ) -> dict[str, Any] | None:
        """The Sent Items copy we stamped with a single-value extended property, if any: how a
        send whose outcome is unknown is recognised as already done."""
        flt = (f"singleValueExtendedProperties/Any(ep: ep/id eq {_odata_literal(property_id)}"
               f" and ep/value eq {_odata_literal(value)})")
        params = {"$filter": flt, "$top": 1,
                  **_select(select or ["id", "internetMessageId", "conversationId",
                                       "sentDateTime"])}
        body = self._json(await self._send(
            "GET", f"{_u(user)}/mailFolders/sentitems/messages", params=params))
        values = body.get("value", [])
        return values[0] if values else None

    async def list_master_categories(self, user: str) -> list[dict[str, Any]]:
        body = self._json(await self._send("GET", f"{_u(user)}/outlook/masterCategories"))
        return list(body.get("value", []))

    async def ensure_master_category(self, user: str, name: str, color: str = "preset0"
                                     ) -> dict[str, Any]:
        """The mailbox's category `name`, created if missing (a lost race is fine)."""
        for category in await self.list_master_categories(user):
            if str(category.get("displayName", "")).lower() == name.lower():
                return category
        try:
            return self._json(await self._send(
                "POST", f"{_u(user)}/outlook/masterCategories",
                json_body={"displayName": name, "color": color}))
        except UpstreamError as error:
            if error.kind not in (ErrorKind.CONFLICT, ErrorKind.INVALID):
                raise
            for category in await self.list_master_categories(user):
                if str(category.get("displayName", "")).lower() == name.lower():
                    return category
            raise

    async def patch_messages_categories(
        self, user: str, changes: Sequence[tuple[str, Sequence[str]]]
    ) -> list[BatchResponse]:
        """Set the categories of many messages in $batch calls (20 per call)."""
        return await self.batch([
            BatchRequest("PATCH", f"{_u(user)}/messages/{_seg(message_id)}",
                         body={"categories": list(categories)})
            for message_id, categories in changes
        ])

    # --- events, contacts, tasks ---------------------------------------------------------------

    async def create_event(self, user: str, body: Mapping[str, Any], *,
                           transaction_id: str | None = None) -> dict[str, Any]:
        """Create an event; with `transaction_id` Graph dedupes resends, so it is retried."""
        payload = dict(body)
        if transaction_id:
            payload["transactionId"] = transaction_id
        return self._json(await self._send("POST", f"{_u(user)}/events", json_body=payload,
                                           safe=bool(transaction_id)))

    async def get_event(self, user: str, event_id: str, *,
                        select: Sequence[str] | None = None) -> dict[str, Any]:
        return self._json(await self._send("GET", f"{_u(user)}/events/{_seg(event_id)}",
                                           params=_select(select)))

    async def update_event(self, user: str, event_id: str, patch: Mapping[str, Any]
                           ) -> dict[str, Any]:
        return self._json(await self._send("PATCH", f"{_u(user)}/events/{_seg(event_id)}",
                                           json_body=dict(patch)))

    async def delete_event(self, user: str, event_id: str) -> None:
        await self._send("DELETE", f"{_u(user)}/events/{_seg(event_id)}", ok=(404,))

    def list_event_instances(self, user: str, event_id: str, *, start: str, end: str,
                             select: Sequence[str] | None = None
                             ) -> AsyncIterator[dict[str, Any]]:
        return self._list(f"{_u(user)}/events/{_seg(event_id)}/instances",
                           {"startDateTime": start, "endDateTime": end, **_select(select)},
                           page_size=self.page_size)

    async def create_contact(self, user: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(await self._send("POST", f"{_u(user)}/contacts",
                                           json_body=dict(body)))

    async def update_contact(self, user: str, contact_id: str, patch: Mapping[str, Any]
                             ) -> dict[str, Any]:
        return self._json(await self._send("PATCH", f"{_u(user)}/contacts/{_seg(contact_id)}",
                                           json_body=dict(patch)))

    async def delete_contact(self, user: str, contact_id: str) -> None:
        await self._send("DELETE", f"{_u(user)}/contacts/{_seg(contact_id)}", ok=(404,))

    async def list_todo_lists(self, user: str) -> list[dict[str, Any]]:
        return [item async for item in self._list(f"{_u(user)}/todo/lists")]

    async def create_task(self, user: str, list_id: str, body: Mapping[str, Any]
                          ) -> dict[str, Any]:
        return self._json(await self._send(
            "POST", f"{_u(user)}/todo/lists/{_seg(list_id)}/tasks", json_body=dict(body)))

    async def update_task(self, user: str, list_id: str, task_id: str,
                          patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(await self._send(
            "PATCH", f"{_u(user)}/todo/lists/{_seg(list_id)}/tasks/{_seg(task_id)}",
            json_body=dict(patch)))

    async def delete_task(self, user: str, list_id: str, task_id: str) -> None:
        await self._send("DELETE",
                         f"{_u(user)}/todo/lists/{_seg(list_id)}/tasks/{_seg(task_id)}",
                         ok=(404,))

    # --- $batch -------------------------------------------------------------------------------

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResponse]:
        """Send many requests in JSON $batch calls of at most 20, answers in request order.

        Inner requests throttled (429/503) are resent alone after the largest inner
        Retry-After, within the retry policy; one throttled request never fails the batch:
        what is still throttled when the budget runs out comes back with its transient error.
        """
        prepared: list[BatchRequest] = []
        for index, request in enumerate(requests):
            rid = request.id or str(index + 1)
            prepared.append(BatchRequest(request.method.upper(), request.url, request.body,
                                         request.headers, rid, request.depends_on,
                                         request.safe))
        if len({r.id for r in prepared}) != len(prepared):
            raise ValueError("batch request ids must be unique")
        results: dict[str, BatchResponse] = {}
        for start in range(0, len(prepared), BATCH_LIMIT):
            await self._batch_chunk(prepared[start:start + BATCH_LIMIT], results)
        return [results[str(r.id)] for r in prepared]

    async def _batch_chunk(self, chunk: list[BatchRequest],
                           results: dict[str, BatchResponse]) -> None:
        pending = chunk
        waited = 0.0
        attempt = 0
        while pending:
            attempt += 1
            answers = await self._send_batch(pending)
            results.update(answers)
            throttled = [r for r in pending if answers[str(r.id)].status in REFUSED_STATUSES]
            if not throttled:
                return
            hints = [error.retry_after for r in throttled
                     if (error := answers[str(r.id)].error) is not None]
            known = [h for h in hints if h is not None]
            # Requests that failed only because a throttled one they depend on did (424).
            blocked = {str(r.id) for r in throttled}
            throttled += [r for r in pending if answers[str(r.id)].status == 424
                          and blocked.intersection(r.depends_on or [])]
            delay = max(known) if known else self.retry.backoff(attempt)
            if attempt >= self.retry.max_attempts or waited + delay > self.retry.max_total_wait:
                log.warning("graph batch: %d inner requests still throttled", len(throttled))
                return
            log.info("graph batch: resending %d throttled of %d in %.2fs", len(throttled),
                     len(chunk), delay)
            await self.retry.sleep(delay)
            waited += delay
            pending = throttled

    async def _send_batch(self, chunk: list[BatchRequest]) -> dict[str, BatchResponse]:
        ids = {str(r.id) for r in chunk}
        payload = []
        for r in chunk:
            headers = {"Prefer": IMMUTABLE_IDS, **(r.headers or {})}
            item: dict[str, Any] = {"id": r.id, "method": r.method, "url": r.url}
            if r.body is not None:
                headers.setdefault("Content-Type", "application/json")
                item["body"] = r.body
            item["headers"] = headers
            depends = [d for d in (r.depends_on or []) if d in ids]
            if depends:
                item["dependsOn"] = depends
            payload.append(item)
        safe = all(r.safe if r.safe is not None else r.method in IDEMPOTENT_METHODS
                   for r in chunk)
        response = await self._send("POST", "/$batch", json_body={"requests": payload},
                                    safe=safe, operations=len(chunk))
        body = self._json(response)
        answers: dict[str, BatchResponse] = {}
        for raw in body.get("responses", []):
            rid = str(raw.get("id"))
            if rid not in ids:
                continue
            status = int(raw.get("status", 0))
            headers = {str(k): str(v) for k, v in (raw.get("headers") or {}).items()}
            inner = raw.get("body")
            error = None
            if status >= 400:
                empty = inner is None or inner == "" or inner == {}
                error = graph_error_from(status, headers, inner, empty=empty)
            answers[rid] = BatchResponse(rid, status, headers, inner, error)
        for rid in ids - answers.keys():
            answers[rid] = BatchResponse(rid, 503, {}, None, UpstreamError(
                "graph batch answer missing", kind=ErrorKind.TRANSIENT, status=503,
                service=SERVICE))
        return answers


def new_transaction_id() -> str:
    """A fresh transactionId for `create_event` (store it with the intent before sending)."""
    return str(uuid.uuid4())


__all__ = ["BatchRequest", "BatchResponse", "DeltaPage", "GraphClient", "new_transaction_id"]
