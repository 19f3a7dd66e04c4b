"""GraphClient: the Microsoft Graph calls the sync engines make, over one httpx.AsyncClient.

Every request asks for immutable ids (`Prefer: IdType="ImmutableId"`) so an item keeps its id
when it moves between folders (parked pending items and the copies on tracked-message rows
are keyed by it). Paging is hidden by `list_*`; delta is exposed page by page because the
caller must persist each page's cursor before asking for the next (a crash then resumes
mid-backlog instead of starting over). Throttling is absorbed by the shared retry loop,
`$batch` (shared/graph/batch.py) resends only the parts the resend rule allows, and every
request waits for a slot of its mailbox's concurrency limit (shared/graph/concurrency.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import ErrorKind, UpstreamError
from shared.graph.batch import IMMUTABLE_IDS, BatchRequest, BatchResponse, GraphBatching
from shared.graph.concurrency import GatedTransport, MailboxGate
from shared.graph.errors import SERVICE, graph_error
from shared.http.retry import RetryPolicy
from shared.http.service import DEFAULT_TIMEOUT, Hooks
from shared.http.transport import AiohttpTransport

log = logging.getLogger("sss.graph")


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


def _seg(value: str) -> str:
    """One path segment: ids are URL-safe base64, UPNs keep their @."""
    return quote(value, safe="@=")


def _u(user: str) -> str:
    return f"/users/{_seg(user)}"


def _odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _select(select: Sequence[str] | None) -> dict[str, str]:
    return {"$select": ",".join(select)} if select else {}


class GraphClient(GraphBatching):
    """Microsoft Graph for app-only (any mailbox) or on-behalf-of (the user's own) calls.

    `mailbox_gate` is the worker's one gate of per-mailbox slots: every GraphClient of a
    worker (the app's and each caller's) must share it, so that together they keep to the
    limit. Without one the client keeps to the limit on its own.
    """

    service = SERVICE

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        event_hooks: Hooks | None = None,
        page_size: int = 100,
        mailbox_gate: MailboxGate | None = None,
    ) -> None:
        self.mailbox_gate = mailbox_gate or MailboxGate()
        super().__init__(base_url, auth,
                         transport=GatedTransport(transport or AiohttpTransport(),
                                                  self.mailbox_gate),
                         timeout=timeout, retry=retry, event_hooks=event_hooks,
                         page_size=page_size)

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


def new_transaction_id() -> str:
    """A fresh transactionId for `create_event` (store it with the intent before sending)."""
    return str(uuid.uuid4())


__all__ = ["BatchRequest", "BatchResponse", "DeltaPage", "GraphClient", "new_transaction_id"]
