"""The intent executor: carries out an add-in's track / set-regarding / untrack.

One executor serves three callers, so an action means the same thing whoever finishes it:
the immediate attempt of the HTTP call (acting on behalf of the user through OBO), the retry
queue and the scheduled cycle (both app-only, with the Dataverse application user impersonating
the caller, so the caller's CRM security still decides). An intent is written before it is
attempted and is only ever moved to "done" (with the answer the caller gets on a replay) or
"failed" (a permanent refusal, with the problem the caller gets); transient failures leave it
"pending" for the queue and, past the queue's attempts, for the mailbox's next scheduled cycle;
when no cycle will run it (the mailbox is not enabled) it fails as `mailbox_not_enabled`.

Activities are created exactly like the incoming engine creates them (domain
`build_incoming_email` with the same parties) and coordinated through the one TrackedMessage row
per internetMessageId (meetings: "ical:<iCalUId>"), so both paths give identical CRM rows and
one activity per message.

Round trips of a track, each step a set of parallel requests:
1. Graph GET of the item (with only the fields needed) and the regarding record read as the user;
2. the party lookups as the user (parallel GETs; WhoAmI once per process) alongside the duplicate
   check by messageid (application user, ids only); meanwhile, in Table Storage, the intent is
   written (the HTTP call's first attempt) and then the TrackedMessage row claimed;
3. the Dataverse create (parties and regarding deep-inserted) alongside the category PATCH.
Then one conditional write of the TrackedMessage row (under the ETag the claim returned) and
the intent's outcome; the HTTP call's first attempt answers without waiting for them (see
"answering before the bookkeeping writes").
When the caller's Graph OBO token is not cached, round 1 is the OBO exchange; the item is then
read speculatively with the app's own Graph client meanwhile, so round 2's reads start from
that copy while the caller's own read confirms it (`Executor.prefetch`): still 3 rounds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from shared.dataverse import DataverseClient, DataverseOperation
from shared.domain.addresses import (
    graph_participants,
    graph_recipients,
    graph_sender,
    normalize_message_id,
)
from shared.domain.correlation import RegardingRef
from shared.domain.email_activity import ENTITY_SETS, build_incoming_email, truncate
from shared.domain.mailbox import Channel, Mailbox
from shared.domain.parties import (
    CandidateRecord,
    PartyResolution,
    build_activity_parties,
    party_row,
    resolve,
)
from shared.domain.tracking import TrackingDecision, has_category
from shared.errors import ErrorKind, UpstreamError
from shared.graph import GraphClient
from shared.settings import Settings
from shared.store import Intent, Store
from shared.store.errors import ConcurrencyError
from shared.store.tracked import Claim, Regarding, TrackedMessage
from shared.sync.batching import literal
from shared.sync.parties import TABLES, candidates_from, lookup_operations
from shared.sync.status import status_view
from shared.sync.threads import activity_id_for
from shared.tasks import left_alone
from shared.tasks import within as within_deadline

T = TypeVar("T")

log = logging.getLogger("sss.intents")

MESSAGE_SELECT = (
    "id", "internetMessageId", "subject", "from", "sender", "toRecipients", "ccRecipients",
    "receivedDateTime", "sentDateTime", "conversationId", "conversationIndex", "categories",
    "internetMessageHeaders", "body",
)
EVENT_SELECT = (
    "id", "iCalUId", "subject", "start", "end", "location", "organizer", "attendees", "body",
    "categories", "isAllDay",
)
# Primary name column per table: what "display name" means for a record.
PRIMARY_NAME: dict[str, str] = {
    "contact": "fullname", "account": "name", "lead": "fullname", "opportunity": "name",
    "incident": "title", "systemuser": "fullname", "queue": "name",
}
# Address columns searched to resolve parties (Dynamics' email-enabled tables we support).
PARTY_TABLES: dict[str, tuple[str, ...]] = {spec.table: spec.columns for spec in TABLES}
# Appointment party roles (activityparty.participationtypemask).
ORGANIZER, REQUIRED, OPTIONAL = 7, 5, 6
CLAIM_STALE_AFTER = timedelta(minutes=2)
# Why an intent nobody will finish failed, and the sentence the add-in shows for it.
MAILBOX_NOT_ENABLED = "mailbox_not_enabled"
NOT_ENABLED_DETAIL = ("Your mailbox is not enabled for server-side synchronization, so this "
                      "could not be finished. Ask your administrator to enable your mailbox, "
                      "then try again.")
# Entra object id -> systemuserid; a user's systemuserid never changes.
_SYSTEMUSERS: dict[str, str] = {}


class ActionRefused(Exception):
    """A permanent refusal (403/404/409/400): retrying will not change it."""

    def __init__(self, status: int, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field

    def problem(self) -> dict[str, Any]:
        titles = {400: "Invalid request", 403: "Forbidden", 404: "Not found", 409: "Conflict"}
        title = titles.get(self.status, "Refused")
        body: dict[str, Any] = {
            "type": f"https://sss.dev/problems/{title.lower().replace(' ', '-')}",
            "title": title, "status": self.status, "detail": self.detail,
        }
        if self.field:
            body["field"] = self.field
        return body


class Superseded(Exception):
    """The intent an attempt was started for already existed (the same request, concurrently):
    nothing was written; the caller carries on with the stored intent."""

    def __init__(self, intent: Intent, etag: str) -> None:
        super().__init__("intent already existed")
        self.intent = intent
        self.etag = etag


class InProgress(UpstreamError):
    """Another mailbox is creating the activity right now: try again shortly."""

    def __init__(self) -> None:
        super().__init__("tracking in progress elsewhere", kind=ErrorKind.TRANSIENT,
                         service="store")


@dataclass
class Actor:
    """Who acts, and through which clients. `graph`/`dataverse` act as the caller (OBO, or
    app-only on the caller's mailbox with CallerObjectId); `app_dataverse` is the application
    user, used only for id lookups (duplicate checks) a user-scoped reader could miss, and
    `app_graph` for removing the category from other participants' copies and, when the
    caller's OBO token is not cached yet (`cold`), for the speculative read of their item (see
    `Executor.prefetch`)."""

    object_id: str
    graph: GraphClient
    dataverse: DataverseClient
    app_dataverse: DataverseClient
    app_graph: GraphClient | None = None
    warm: Any = None  # awaitable factory that pre-fetches OBO tokens in parallel
    cold: bool = False  # the caller's Graph OBO token must be exchanged first

    @property
    def mailbox_id(self) -> str:
        return self.object_id


def app_actor(runtime: Any, object_id: str) -> Actor:
    """The caller as the background sync sees them: no user token needed."""
    return Actor(object_id=object_id, graph=runtime.graph,
                 dataverse=runtime.dataverse.impersonate(object_id),
                 app_dataverse=runtime.dataverse, app_graph=runtime.graph)


@dataclass
class Reads:
    """Round 2's reads of a track: the activity already in the CRM for the key, the caller's
    systemuserid and the party rows for the addresses, as read for `key` and `addresses`."""

    key: str
    addresses: list[str]
    existing_id: str | None
    systemuser_id: str | None
    rows: dict[str, list[dict[str, Any]]]


@dataclass
class Prefetched:
    """What the validation step already read, so the attempt does not read it again.

    `reads`: round 2's reads started speculatively from the app's read of the item (cold
    path); the attempt uses them only if they were made for the item the caller's own read
    returned (same key, same addresses). They are reads only: nothing is written from them."""

    item: dict[str, Any]
    regarding: Regarding | None = None
    reads: asyncio.Future[Reads | None] | None = None


@dataclass
class Outcome:
    """The answer of an action: HTTP status and body (stored on the intent for replays)."""

    http_status: int
    body: dict[str, Any] = field(default_factory=dict)


# --- small pure helpers -----------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


_ACTIVITY_NAMESPACE = uuid.UUID("5d6f7c1a-2b8e-4f3a-9e41-7a0c2d9b4e63")


def activity_id_of(intent_id: str) -> str:
    """The id of the appointment an intent creates (an email's derives from its message id):
    a later attempt of the same intent that finds it knows it created it."""
    return str(uuid.uuid5(_ACTIVITY_NAMESPACE, "intent:" + intent_id))


def entity_set_of(table: str) -> str:
    return ENTITY_SETS.get(table.lower(), f"{table.lower()}s")


def item_key(item_type: str, item: Mapping[str, Any]) -> str:
    """The TrackedMessage key: the internetMessageId, or "ical:<iCalUId>" for meetings."""
    if item_type == "event":
        uid = str(item.get("iCalUId") or "")
        if not uid:
            raise ActionRefused(409, "the meeting has no iCalUId yet", field="item_id")
        return f"ical:{uid}"
    key = normalize_message_id(item.get("internetMessageId"))
    if not key:
        raise ActionRefused(409, "the message has no internetMessageId (a draft?)",
                            field="item_id")
    return key


def party_operations(addresses: Sequence[str]) -> list[tuple[str, DataverseOperation]]:
    """One In() GET per email-enabled table for all addresses (the cycle's lookup, as is)."""
    return lookup_operations(addresses)


def candidates_by_address(rows_by_table: Mapping[str, Sequence[dict[str, Any]]],
                          addresses: Sequence[str]) -> dict[str, list[CandidateRecord]]:
    """Which records carry each address, from the rows `party_operations` returned."""
    return candidates_from(rows_by_table, addresses)


def resolve_all(candidates: Mapping[str, Sequence[CandidateRecord]],
                systemuser_id: str | None) -> dict[str, PartyResolution]:
    return {address: resolve(address, records, systemuser_id)
            for address, records in candidates.items()}


def _addresses(item_type: str, item: Mapping[str, Any]) -> list[str]:
    return event_addresses(item) if item_type == "event" else graph_participants(item)


def _attendees(event: Mapping[str, Any], kind: str) -> list[str]:
    return [a for a, _ in graph_recipients(
        [x for x in event.get("attendees") or () if str(x.get("type", "")).lower() == kind])]


def event_addresses(event: Mapping[str, Any]) -> list[str]:
    organizer = graph_recipients([event["organizer"]] if event.get("organizer") else [])
    return ([a for a, _ in organizer] + _attendees(event, "required")
            + _attendees(event, "optional"))


def build_email(message: Mapping[str, Any], regarding: Regarding | None,
                resolutions: Mapping[str, PartyResolution]) -> dict[str, Any]:
    """The email create body, exactly as the incoming engine builds it for a category-tracked
    message (manual tracking), so both paths produce identical rows."""
    sender = graph_sender(message)
    parties = build_activity_parties(
        sender[0] if sender else None,
        [a for a, _ in graph_recipients(message.get("toRecipients"))],
        [a for a, _ in graph_recipients(message.get("ccRecipients"))],
        resolutions=resolutions)
    ref = RegardingRef(regarding.table, regarding.id) if regarding else None
    decision = TrackingDecision(track=True, reason="category", regarding=ref)
    return build_incoming_email(message, decision, parties,
                                regarding_entity_set=entity_set_of(regarding.table)
                                if regarding else None)


def _event_time(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not value.get("dateTime"):
        return None
    text = str(value["dateTime"])
    zone = str(value.get("timeZone") or "UTC")
    if zone.upper() == "UTC" and not text.endswith("Z") and "+" not in text[10:]:
        text = text.split(".")[0] + "Z"
    return text


def build_appointment(event: Mapping[str, Any], regarding: Regarding | None,
                      resolutions: Mapping[str, PartyResolution]) -> dict[str, Any]:
    """The appointment create body: organizer (7), required (5) and optional (6) attendees."""
    rows: list[dict[str, Any]] = []
    organizer = graph_recipients([event["organizer"]] if event.get("organizer") else [])
    groups = [(ORGANIZER, [a for a, _ in organizer]), (REQUIRED, _attendees(event, "required")),
              (OPTIONAL, _attendees(event, "optional"))]
    for mask, addresses in groups:
        for address in dict.fromkeys(addresses):
            rows.append(party_row(address, mask, resolutions.get(address)))  # type: ignore[arg-type]
    body: dict[str, Any] = {
        "subject": (str(event.get("subject") or ""))[:200],
        "description": str((event.get("body") or {}).get("content") or ""),
        "globalobjectid": str(event.get("iCalUId") or "")[:300],
        "appointment_activity_parties": rows,
    }
    location = (event.get("location") or {}).get("displayName")
    optional = {"scheduledstart": _event_time(event.get("start")),
                "scheduledend": _event_time(event.get("end")),
                "location": (truncate("subject", location) or "")[:200] if location else None,
                "isalldayevent": bool(event.get("isAllDay")) if "isAllDay" in event else None}
    body.update({k: v for k, v in optional.items() if v is not None})
    if regarding is not None:
        body[f"regardingobjectid_{regarding.table}_appointment@odata.bind"] = \
            f"/{entity_set_of(regarding.table)}({regarding.id})"
    return body


# --- the executor -----------------------------------------------------------------------------


class Executor:
    """Runs one action for one actor against the store and the services."""

    def __init__(self, settings: Settings, store: Store, actor: Actor, *,
                 clock: Any = utcnow, ready: Callable[[], Awaitable[None]] | None = None
                 ) -> None:
        self.settings = settings
        self.store = store
        self.actor = actor
        self.clock = clock
        # Awaited before the first write of an action (the intent being written meanwhile must
        # be durable first); may raise Superseded. None: the intent is already stored.
        self.ready = ready
        # Set by `attempt`: a track's last row write is left to `_conclude` (`row_write`: how
        # to start it, and how to redo it if the row changed meanwhile) so that it goes out
        # with the intent's outcome.
        self.defer_row = False
        self.row_write: tuple[Callable[[], Awaitable[Any]],
                              Callable[[], Awaitable[Outcome]]] | None = None
        self.key: str | None = None  # the TrackedMessage key the action works on
        self.intent_id: str | None = None  # the intent carried out (names what it creates)

    async def _ready(self) -> None:
        if self.ready is not None:
            await self.ready()

    # reads -------------------------------------------------------------------------------------

    async def fetch_item(self, item_type: str, item_id: str) -> dict[str, Any]:
        """The item from the caller's own mailbox; 404 when it is not there."""
        try:
            if item_type == "event":
                return await self.actor.graph.get_event(self.actor.object_id, item_id,
                                                        select=EVENT_SELECT)
            return await self.actor.graph.get_message(self.actor.object_id, item_id,
                                                      select=MESSAGE_SELECT)
        except UpstreamError as error:
            if error.kind is ErrorKind.NOT_FOUND or (error.kind is ErrorKind.INVALID):
                raise ActionRefused(404, "the item is not in your mailbox",
                                    field="item_id") from None
            if error.kind is ErrorKind.FORBIDDEN:
                raise ActionRefused(403, "you may not act on this item",
                                    field="item_id") from None
            raise

    async def read_regarding(self, ref: Mapping[str, str]) -> Regarding:
        """The regarding record as the caller sees it: 403/404 when they cannot read it."""
        table, record_id = ref["table"], ref["id"]
        if table not in self.settings.regarding_tables:
            raise ActionRefused(400, f"regarding.table: {table} is not an allowed table",
                                field="regarding.table")
        name_column = PRIMARY_NAME.get(table)
        try:
            row = await self.actor.dataverse.get(
                entity_set_of(table), record_id,
                select=[name_column] if name_column else None)
        except UpstreamError as error:
            if error.kind is ErrorKind.FORBIDDEN:
                raise ActionRefused(403, "you may not read the regarding record",
                                    field="regarding.id") from None
            if error.kind in (ErrorKind.INVALID, ErrorKind.NOT_FOUND):
                raise ActionRefused(404, "the regarding record was not found",
                                    field="regarding.id") from None
            raise
        if row is None:
            raise ActionRefused(404, "the regarding record was not found", field="regarding.id")
        name = row.get(name_column) if name_column else (
            row.get("name") or row.get("fullname") or row.get("title"))
        return Regarding(table=table, id=record_id, name=name)

    async def prefetch(self, payload: Mapping[str, Any], *, speculate: bool = False,
                       writable: asyncio.Future[None] | None = None) -> Prefetched:
        """Round trip 1: the item and the regarding record, in parallel (token warm-up too).

        With `speculate` (a track), round 2's reads (`Reads`) start the moment the item
        arrives, in this task, so they leave before the caller builds its storage writes.
        When the caller's Graph OBO token is not cached, round 1 is the OBO exchange and the
        item's read as the user is round 2: the item is then also read with the app's own
        Graph client, from the caller's own mailbox only, while the token is exchanged, and
        round 2's reads start from that copy, alongside the read as the user. They are reads
        only, and `track` uses them only if the caller's own read returns the same item; that
        read still decides whether the request is refused. If the app may not read the
        mailbox, the path is the sequential one.

        `writable` (cold path) is set once the app's read found the item in the caller's own
        mailbox, the caller's OBO tokens were issued and the regarding record (if any) was
        read as the caller: the intent may then be written alongside the caller's own read
        instead of after it (the caller takes it back should that read still refuse)."""
        item_type, item_id = payload["item_type"], payload["item_id"]
        cold = speculate and self.actor.cold and self.actor.app_graph is not None
        jobs: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.fetch_item(item_type, item_id))]
        if payload.get("regarding"):
            jobs.append(asyncio.ensure_future(self.read_regarding(payload["regarding"])))
        if self.actor.warm is not None and (cold or not payload.get("regarding")):
            jobs.append(asyncio.ensure_future(self.actor.warm()))
        side: list[asyncio.Future[Any]] = []
        speculation: asyncio.Future[Reads | None] | None = None
        if cold:  # after the OBO exchanges (started above): they are the longer wait
            found: asyncio.Future[dict[str, Any] | None] = \
                asyncio.get_running_loop().create_future()
            speculation = asyncio.ensure_future(self._speculate(item_type, item_id, found))
            side.append(speculation)
            if writable is not None:
                side.append(asyncio.ensure_future(_open(writable, found, jobs[1:])))
        try:
            results = await asyncio.gather(*jobs, return_exceptions=True)
            for result in results:  # a refusal outranks a transient failure of the other half
                if isinstance(result, ActionRefused):
                    raise result
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except BaseException:
            for job in [*jobs, *side]:
                job.cancel()
            raise
        item = results[0]
        regarding = results[1] if payload.get("regarding") else None
        if isinstance(item, BaseException) or isinstance(regarding, BaseException):
            raise AssertionError("unreachable: every exception was raised above")
        reads: asyncio.Future[Reads | None] | None = speculation
        if speculate and speculation is None:
            reads = self._start_reads(item_type, item_key(item_type, item),
                                      _addresses(item_type, item))
        return Prefetched(item=item, regarding=regarding, reads=reads)

    async def _speculate(self, item_type: str, item_id: str,
                         found: asyncio.Future[dict[str, Any] | None]) -> Reads | None:
        """The item as the app reads it in the caller's own mailbox (also set on `found`;
        None when the app cannot read it), then round 2's reads for it (the ids-only
        duplicate check, and the caller's). None when a read fails: the attempt then reads as
        usual."""
        graph = self.actor.app_graph
        assert graph is not None
        try:
            if item_type == "event":
                item = await graph.get_event(self.actor.object_id, item_id, select=EVENT_SELECT)
            else:
                item = await graph.get_message(self.actor.object_id, item_id,
                                               select=MESSAGE_SELECT)
            key = item_key(item_type, item)
        except (UpstreamError, ActionRefused) as error:
            log.info("speculative read not used: %s", type(error).__name__)
            found.set_result(None)
            return None
        except BaseException:
            found.cancel()
            raise
        found.set_result(item)
        # As the caller without waiting for their OBO token: the application user
        # impersonating them (CallerObjectId), which Dataverse answers with the caller's own
        # privileges, as the retry queue's and the sync cycle's actions are.
        as_caller = self.actor.app_dataverse.impersonate(self.actor.object_id)
        try:
            return await self._start_reads(item_type, key, _addresses(item_type, item), as_caller)
        except (UpstreamError, ActionRefused):
            return None

    def _start_reads(self, item_type: str, key: str, addresses: list[str],
                     reader: DataverseClient | None = None, *,
                     existing: asyncio.Future[str | None] | None = None
                     ) -> asyncio.Future[Reads | None]:
        """Round 2's reads for this item, each request its own task created now (not behind
        a gather's extra loop turn): the duplicate check as the app, and as the caller who
        they are in the CRM (cached per process) and every party lookup. Parallel GETs rather
        than one $batch: Dataverse runs a batch's operations one after another, so the batch
        costs their sum, not their max. Failures are raised to whoever awaits the result.
        `existing`: the duplicate check's answer when it is known already."""
        reader = reader or self.actor.dataverse
        existing = existing or asyncio.ensure_future(self._lookup_existing(item_type, key))
        user = asyncio.ensure_future(self._systemuser_id(reader))
        operations = party_operations(addresses) if addresses else []
        lookups = [asyncio.ensure_future(self._rows(op, reader)) for _, op in operations]

        async def combined() -> Reads | None:
            found, user_id, *rows = await asyncio.gather(existing, user, *lookups)
            tables = [table for table, _ in operations]
            return Reads(key, addresses, found, user_id, dict(zip(tables, rows, strict=True)))

        result = asyncio.ensure_future(combined())
        left_alone(result)  # a prefetch whose result is not used (a replay) leaves it unawaited
        return result

    async def _reads(self, item_type: str, key: str, addresses: list[str],
                     pre: Prefetched) -> Reads:
        """Round 2's reads for this item: the ones started early when they were made for it,
        else read now (keeping the early duplicate check when only the addresses differ)."""
        reads = None
        started, pre.reads = pre.reads, None  # used once
        if started is not None and not started.cancelled():
            reads = await started
        if reads is not None and reads.key == key:
            if reads.addresses == addresses:
                return reads
            known: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            known.set_result(reads.existing_id)
            fresh = await self._start_reads(item_type, key, addresses, existing=known)
        else:
            fresh = await self._start_reads(item_type, key, addresses)
        assert fresh is not None
        return fresh

    async def _lookup_existing(self, item_type: str, key: str) -> str | None:
        """The activity already in the CRM for this message/meeting (ids only, app user)."""
        if item_type == "event":
            flt = f"globalobjectid eq {literal(key.removeprefix('ical:'))}"
            entity_set = "appointments"
        else:
            flt = f"messageid eq {literal(key)}"
            entity_set = "emails"
        async for row in self.actor.app_dataverse.list(entity_set, select=["activityid"],
                                                        filter=flt, top=1):
            return str(row["activityid"])
        return None

    async def _systemuser_id(self, reader: DataverseClient) -> str | None:
        cached = _SYSTEMUSERS.get(self.actor.object_id)
        if cached is not None:
            return cached
        body = await reader.whoami()
        user_id = str(body.get("UserId") or "").lower() or None
        if user_id:
            if len(_SYSTEMUSERS) > 10_000:
                _SYSTEMUSERS.clear()
            _SYSTEMUSERS[self.actor.object_id] = user_id
        return user_id

    async def _rows(self, op: DataverseOperation, reader: DataverseClient
                    ) -> list[dict[str, Any]]:
        entity_set, _, query = op.path.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&") if part)
        from urllib.parse import unquote

        try:
            return [row async for row in reader.list(
                entity_set, select=params.get("$select", "").split(","),
                filter=unquote(params.get("$filter", "")) or None)]
        except UpstreamError as error:
            if error.kind is ErrorKind.FORBIDDEN:
                return []  # no read privilege on the table: addresses stay unresolved
            raise

    # row helpers -------------------------------------------------------------------------------

    async def _save_row(self, key: str, change: Any,
                        known: tuple[TrackedMessage, str] | None = None) -> TrackedMessage:
        """Read-modify-write the TrackedMessage row under its ETag (a lost race re-reads).

        `known`: the row and ETag this attempt already holds (from its claim): changed and
        written without reading it again, and not written at all when the change is a no-op."""
        if known is not None:
            message, etag = known
            before = message.model_dump()
            change(message)
            if message.model_dump() == before:
                return message
            try:
                await self.store.tracked.update(message, etag)
                return message
            except ConcurrencyError:
                pass  # changed meanwhile: read it again below
        for _ in range(5):
            found = await self.store.tracked.get(key)
            if found is None:
                claim = await self.store.tracked.claim(key, self.actor.mailbox_id, self.clock())
                message, etag = claim.message, claim.etag
            else:
                message, etag = found
            change(message)
            try:
                await self.store.tracked.update(message, etag)
                return message
            except ConcurrencyError:
                continue
        raise UpstreamError("tracked row kept changing", kind=ErrorKind.TRANSIENT,
                            service="store")

    def _save_row_with_outcome(self, key: str, change: Any, known: tuple[TrackedMessage, str],
                               answer: Callable[[TrackedMessage], Outcome]) -> TrackedMessage:
        """`_save_row` with a known row, left to `_conclude` (not started here): the row as
        it will be written. If it changed meanwhile, `redo` writes it the long way and answers
        from what was written."""
        message, etag = known
        before = message.model_dump()
        change(message)
        if message.model_dump() == before:
            return message
        written = message.model_copy(deep=True)

        async def write() -> str:
            return await self.store.tracked.update(written, etag)

        async def redo() -> Outcome:
            return answer(await self._save_row(key, change))

        self.row_write = (write, redo)
        return message

    async def _claim(self, key: str, item_id: str) -> tuple[TrackedMessage, str]:
        """Become the creator of the activity, unless someone else is creating it right now.
        Returns the claimed row and its ETag."""
        now = self.clock()
        claim = await self.store.tracked.claim(key, self.actor.mailbox_id, now, item_id)
        if claim.won:
            return claim.message, claim.etag
        return await self._take_over(claim.message, claim.etag, now)

    async def _take_over(self, row: TrackedMessage, etag: str, now: datetime, *,
                         wait_for_others: bool = True) -> tuple[TrackedMessage, str]:
        """Claim a row someone else created (untracked, or a stale claim) under its ETag;
        InProgress while another mailbox's fresh claim stands (unless not `wait_for_others`)."""
        if wait_for_others and row.state == "pending" \
                and row.claimed_by not in (None, self.actor.mailbox_id) \
                and row.claimed_at and now - row.claimed_at < CLAIM_STALE_AFTER:
            raise InProgress()
        row.claimed_by, row.claimed_at = self.actor.mailbox_id, now
        row.claim_intent = self.intent_id
        if row.state != "tracked":
            row.state = "pending"
        try:
            return row, await self.store.tracked.update(row, etag)
        except ConcurrencyError:
            raise InProgress() from None

    async def _claim_row(self, key: str, item_id: str, now: datetime) -> Claim:
        """Round 2's storage side, while Dataverse is read: wait until the intent is durable,
        then the conditional insert of the row (or the row as someone else left it)."""
        await self._ready()
        return await self.store.tracked.claim(key, self.actor.mailbox_id, now, item_id,
                                              intent_id=self.intent_id)

    async def _claimed_for_create(self, claiming: asyncio.Future[Claim], now: datetime
                                  ) -> tuple[TrackedMessage, str]:
        """The row, claimed for this intent while its email is created. The claim names the
        intent before the answer goes, so a later attempt of it (after a worker was lost)
        still answers "created"; another mailbox's claim is not waited for: the email's id
        settles which create wins."""
        claim = await claiming
        if claim.won or claim.message.claim_intent == self.intent_id:
            return claim.message, claim.etag
        return await self._take_over(claim.message, claim.etag, now, wait_for_others=False)

    async def _after_ready(self, write: Callable[[], Awaitable[T]]) -> T:
        """A write of the action, started once the intent is durable (`ready`)."""
        await self._ready()
        return await write()

    async def _set_category(self, item_type: str, item: Mapping[str, Any], on: bool,
                            graph: GraphClient | None = None, user: str | None = None) -> None:
        categories = [str(c) for c in item.get("categories") or ()]
        wanted = self.settings.tracked_category
        present = has_category(categories, wanted)
        if on == present:
            return
        if on:
            new = [*categories, wanted]
        else:
            low = wanted.strip().casefold()
            new = [c for c in categories if c.strip().casefold() != low]
        client = graph or self.actor.graph
        who = user or self.actor.object_id
        if item_type == "event":
            await client.update_event(who, str(item["id"]), {"categories": new})
        else:
            await client.update_message(who, str(item["id"]), {"categories": new})

    # actions -------------------------------------------------------------------------------------

    async def track(self, payload: Mapping[str, Any], pre: Prefetched | None = None
                    ) -> Outcome:
        item_type = payload["item_type"]
        if pre is None:
            pre = await self.prefetch(payload)
        item, regarding = pre.item, pre.regarding
        key = self.key = item_key(item_type, item)
        addresses = _addresses(item_type, item)
        await settled(key=key)  # this process's own answered track of it, still being recorded

        now = self.clock()

        def claim() -> asyncio.Future[Claim]:
            return asyncio.ensure_future(self._claim_row(key, str(item["id"]), now))

        # The claim overlaps round 2 while it is read; when round 2 was read already (the
        # cold path), a new email's create and category go out before it.
        early_claim = None if pre.reads is not None and pre.reads.done() else claim()
        try:
            reads = await self._reads(item_type, key, addresses, pre)
        except BaseException:
            if early_claim is not None:
                left_alone(early_claim)
            raise
        existing_id, user_id, rows = reads.existing_id, reads.systemuser_id, reads.rows
        # The id of what this intent creates. An email's is derived from its message id, the
        # one the sync cycle uses too, so a cycle creating it at the same moment collides
        # (412) instead of duplicating it; a meeting's from the intent. An activity with that
        # id found by a later attempt of the same intent (the row's claim says which intent
        # claimed it) was created by an earlier attempt that stopped before recording it (a
        # worker lost after answering, a failed write): the answer stays "created".
        mine = (activity_id_for(key) if item_type != "event"
                else activity_id_of(self.intent_id) if self.intent_id else None)
        if item_type != "event" and existing_id is None:
            # A new email: its own id already stops a racing writer from duplicating it, so
            # the row's claim need not come first; it goes out with the create.
            body = build_email(item, regarding,
                               resolve_all(candidates_by_address(rows, addresses), user_id))
            body["activityid"] = mine
            create = asyncio.ensure_future(
                self._after_ready(lambda: self._create_once("emails", body, mine)))
            category = asyncio.ensure_future(
                self._after_ready(lambda: self._set_category(item_type, item, True)))
            (activity_id, _), _, (row, etag) = await asyncio.gather(
                create, category, self._claimed_for_create(early_claim or claim(), now))
            outcome = "created"  # by this intent, now or in an attempt before (same id)
        else:
            claimed = await (early_claim or claim())
            row, etag = claimed.message, claimed.etag
            ours = self.intent_id is not None and row.claim_intent == self.intent_id

            def outcome_of(found: str) -> str:
                return "created" if found == mine and (ours or item_type == "event") \
                    else "existing"

            if not claimed.won and row.state == "tracked" and row.activity_id:
                activity_id = row.activity_id
                outcome = outcome_of(activity_id)
                await self._set_category(item_type, item, True)
            elif existing_id is not None:
                activity_id = existing_id
                outcome = outcome_of(activity_id)
                await self._set_category(item_type, item, True)
            else:  # a new meeting: only the claim keeps two attendees from making two
                if not claimed.won:
                    row, etag = await self._take_over(row, etag, now)
                body = build_appointment(
                    item, regarding,
                    resolve_all(candidates_by_address(rows, addresses), user_id))
                if mine is not None:
                    body["activityid"] = mine
                (activity_id, fresh), _ = await asyncio.gather(
                    self._create_once("appointments", body, mine),
                    self._set_category(item_type, item, True))
                outcome = "created" if fresh or activity_id == mine else "existing"
        now = self.clock()
        mailbox_id, item_id = self.actor.mailbox_id, str(item["id"])

        def record(message: TrackedMessage) -> None:
            if message.state != "tracked" or message.activity_id != activity_id:
                message.state, message.activity_id = "tracked", activity_id
                message.tracked_by, message.tracked_at = self.actor.object_id, now
                if outcome == "created" or message.regarding is None:
                    message.regarding = regarding
            message.copies[mailbox_id] = item_id

        def answer(message: TrackedMessage) -> Outcome:
            return Outcome(200, {"outcome": outcome,
                                 "status": status_view(key, message, readable=regarding)})

        log.info("track done outcome=%s activity=%s mailbox=%s", outcome, activity_id,
                 mailbox_id)
        if self.defer_row:
            return answer(self._save_row_with_outcome(key, record, (row, etag), answer))
        return answer(await self._save_row(key, record, known=(row, etag)))

    async def _create_once(self, entity_set: str, body: dict[str, Any], activity_id: str | None
                           ) -> tuple[str, bool]:
        """Create the activity; (id, True), or (id, False) when one with its id was made
        meanwhile (the sync cycle, or an earlier attempt of this intent)."""
        try:
            return await self.actor.dataverse.create(entity_set, body), True
        except UpstreamError as error:
            if error.status == 412 and activity_id is not None:
                return activity_id, False
            raise

    async def set_regarding(self, payload: Mapping[str, Any], pre: Prefetched | None = None
                            ) -> Outcome:
        item_type = payload["item_type"]
        if pre is None:
            pre = await self.prefetch(payload)
        key = self.key = item_key(item_type, pre.item)
        await settled(key=key)
        found, _ = await asyncio.gather(self.store.tracked.get(key), self._ready())
        row = found[0] if found else None
        if row is None or row.state != "tracked" or not row.activity_id:
            # Setting regarding on an untracked item tracks it, as the App for Outlook does.
            return await self.track(payload, pre)
        regarding = pre.regarding
        assert regarding is not None
        table = "appointment" if item_type == "event" else "email"
        bind = {f"regardingobjectid_{regarding.table}_{table}@odata.bind":
                f"/{entity_set_of(regarding.table)}({regarding.id})"}
        try:
            await self.actor.dataverse.update(entity_set_of(table), row.activity_id, bind)
        except UpstreamError as error:
            if error.kind is ErrorKind.FORBIDDEN:
                raise ActionRefused(403, "you may not change this activity",
                                    field="item_id") from None
            if error.kind is ErrorKind.NOT_FOUND:
                raise ActionRefused(409, "the activity was deleted; track the item again",
                                    field="item_id") from None
            raise
        mailbox_id, item_id = self.actor.mailbox_id, str(pre.item["id"])

        def record(message: TrackedMessage) -> None:
            message.regarding = regarding
            message.copies[mailbox_id] = item_id

        message = await self._save_row(key, record)
        await self._set_category(item_type, pre.item, True)
        log.info("set regarding done activity=%s mailbox=%s", row.activity_id, mailbox_id)
        return Outcome(200, {"outcome": "updated",
                             "status": status_view(key, message, readable=regarding)})

    async def untrack(self, payload: Mapping[str, Any], pre: Prefetched | None = None
                      ) -> Outcome:
        item_type = payload["item_type"]
        if pre is None:
            pre = await self.prefetch(payload)
        item = pre.item
        key = self.key = item_key(item_type, item)
        await settled(key=key)
        found, _ = await asyncio.gather(self.store.tracked.get(key), self._ready())
        row = found[0] if found else None
        mailbox_id = self.actor.mailbox_id
        if row is None or row.state != "tracked" or not row.activity_id:
            # not tracked (yet): the user still means "do not track this one"
            await asyncio.gather(self._set_category(item_type, item, False),
                                 self._mark_untracked(item_type, [mailbox_id], key))
            return Outcome(200, {"outcome": "not_tracked", "status": status_view(key, row)})
        table = "appointment" if item_type == "event" else "email"
        owner = await self._owns(entity_set_of(table), row.activity_id)
        if owner:
            others = {m: i for m, i in row.copies.items() if m != mailbox_id and i}
            await asyncio.gather(
                self.actor.dataverse.delete(entity_set_of(table), row.activity_id),
                self._set_category(item_type, item, False))
            await self._clear_other_copies(item_type, others)

            def record(message: TrackedMessage) -> None:
                message.state, message.activity_id, message.regarding = "untracked", None, None
                message.tracked_by, message.tracked_at = None, None
                message.copies = {}

            outcome = "deleted"
        else:
            await self._set_category(item_type, item, False)

            def record(message: TrackedMessage) -> None:
                message.copies.pop(mailbox_id, None)

            outcome = "unlinked"
        # the sync cycles of the mailboxes it left must not track it again by themselves
        marked = ([m for m in row.copies if m != mailbox_id] if outcome == "deleted" else [])
        message, _ = await asyncio.gather(
            self._save_row(key, record),
            self._mark_untracked(item_type, [mailbox_id, *marked], key))
        log.info("untrack done outcome=%s mailbox=%s", outcome, mailbox_id)
        return Outcome(200, {"outcome": outcome, "status": status_view(key, message)})

    async def _mark_untracked(self, item_type: str, mailboxes: list[str], key: str) -> None:
        """Untrack markers: those mailboxes' sync cycles leave the email alone from now on
        (meetings are not synced by the cycle)."""
        if item_type != "event":
            await self.store.untracked.add(mailboxes, key, self.clock())

    async def _owns(self, entity_set: str, activity_id: str) -> bool:
        """Whether the caller owns the activity (one $batch: WhoAmI + the owner column)."""
        results = await self.actor.dataverse.batch([
            DataverseOperation.get("WhoAmI"),
            DataverseOperation.get(f"{entity_set}({activity_id})?$select=_ownerid_value"),
        ])
        whoami, activity = results
        if whoami.error is not None:
            raise whoami.error
        if activity.error is not None:
            if activity.error.kind in (ErrorKind.FORBIDDEN, ErrorKind.NOT_FOUND):
                return False
            raise activity.error
        me = str((whoami.body or {}).get("UserId") or "").lower()
        return bool(me) and str((activity.body or {}).get("_ownerid_value") or "").lower() == me

    async def _clear_other_copies(self, item_type: str, copies: Mapping[str, str]) -> None:
        """Best effort: the category off other participants' copies, so the category rule
        does not track again what the owner just deleted."""
        if not copies or self.actor.app_graph is None:
            return
        graph = self.actor.app_graph

        async def clear(user: str, item_id: str) -> None:
            try:
                if item_type == "event":
                    item = await graph.get_event(user, item_id, select=["id", "categories"])
                else:
                    item = await graph.get_message(user, item_id, select=["id", "categories"])
                await self._set_category(item_type, item, False, graph=graph, user=user)
            except UpstreamError as error:
                log.info("category not removed from a copy: %s", error.summary())

        await asyncio.gather(*(clear(u, i) for u, i in copies.items()))

    async def perform(self, action: str, payload: Mapping[str, Any],
                      pre: Prefetched | None = None) -> Outcome:
        if action == "track":
            return await self.track(payload, pre)
        if action == "set_regarding":
            return await self.set_regarding(payload, pre)
        if action == "untrack":
            return await self.untrack(payload, pre)
        raise ActionRefused(400, f"unknown action {action}")


# --- intents ----------------------------------------------------------------------------------


async def _open(writable: asyncio.Future[None], found: asyncio.Future[Any],
                checks: Sequence[asyncio.Future[Any]]) -> None:
    """Set `writable` once the app found the item and every other check passed."""
    try:
        if await found is None:
            return
        await asyncio.gather(*checks)
    except (Exception, asyncio.CancelledError):  # a failed check: the usual order applies
        return
    if not writable.done():
        writable.set_result(None)


def outcome_of(intent: Intent) -> Outcome | None:
    """The stored answer of a finished intent (what a replay returns)."""
    if intent.state == "pending" or not intent.result:
        return None
    return Outcome(int(intent.result.get("http_status", 200)),
                   dict(intent.result.get("body") or {}))


def _finish(intent: Intent, outcome: Outcome, state: str, now: datetime) -> None:
    body = dict(outcome.body)
    if state == "done":
        body = {"intent_id": intent.intent_id, "state": "done", **body}
    intent.state = state  # type: ignore[assignment]
    intent.result = {"http_status": outcome.http_status, "body": body}
    intent.last_error = None if state == "done" else intent.last_error
    intent.updated_at = now


async def attempt(settings: Settings, store: Store, intent: Intent, etag: str, actor: Actor, *,
                  pre: Prefetched | None = None, within: float | None = None,
                  lease: bool = True) -> tuple[Intent, str]:
    """One attempt of an intent. Returns it done or failed; on a transient failure or a missed
    deadline records the attempt and re-raises (the intent stays pending).

    With `lease` the attempt is first recorded under the intent's ETag, so of two deliveries
    of the same queue message running at once only one acts (the other gets
    ConcurrencyError). An intent this request has just created needs no lease."""
    executor = Executor(settings, store, actor)
    executor.defer_row = True
    executor.intent_id = intent.intent_id
    intent.attempts += 1
    if lease:
        intent.updated_at = utcnow()
        etag = await store.intents.update(intent, etag)
    try:
        work = executor.perform(intent.action, intent.payload, pre)
        outcome = await within_deadline(work, within)
    except ActionRefused as refusal:
        intent.last_error = refusal.detail
        _finish(intent, Outcome(refusal.status, refusal.problem()), "failed", utcnow())
    except (UpstreamError, TimeoutError, ConcurrencyError) as error:
        summary = error.summary() if isinstance(error, UpstreamError) else (
            "deadline passed" if isinstance(error, TimeoutError) else "store race")
        if isinstance(error, UpstreamError) and not error.transient:
            problem = ActionRefused(502, summary)
            intent.last_error = summary
            _finish(intent, Outcome(502, problem.problem()), "failed", utcnow())
        else:
            intent.last_error = summary
            intent.updated_at = utcnow()
            await _save_attempt(store, intent, etag)
            raise
    else:
        return intent, await _conclude(store, intent, etag, executor, outcome)
    return intent, await _save_attempt(store, intent, etag)


async def attempt_created(settings: Settings, store: Store, actor: Actor,
                          write: asyncio.Future[tuple[Intent, str, bool]], action: str,
                          payload: Mapping[str, Any], *, pre: Prefetched, intent_id: str,
                          within: float | None = None) -> tuple[Intent, str | None]:
    """The first attempt of an intent whose creation (`write`, a `create_or_get` running
    meanwhile) this request has just started: the attempt's reads overlap the write, and its
    first write of any kind waits until the intent is durable.

    Raises Superseded (nothing written) when the intent already existed - the same request
    running concurrently: the caller goes on as for a stored intent (which leases it first).
    Errors of the intent write itself are raised as they are (nothing was attempted). Otherwise
    as `attempt`: returns the intent done or failed, or records the attempt and re-raises -
    except that a successful attempt returns as soon as the action is done, with its answer
    and no ETag: its outcome and tracked row are then written in the background (see
    "answering before the bookkeeping writes" below)."""

    async def ready() -> None:
        intent, etag, created = await asyncio.shield(write)
        if not created:
            raise Superseded(intent, etag)

    executor = Executor(settings, store, actor, ready=ready)
    executor.defer_row = True
    executor.intent_id = intent_id
    work = executor.perform(action, payload, pre)
    failure: BaseException | None = None
    outcome: Outcome | None = None
    try:
        outcome = await within_deadline(work, within)
    except Superseded:
        pass  # decided by the write's result below
    except (ActionRefused, UpstreamError, TimeoutError, ConcurrencyError) as error:
        failure = error
    # The intent write decides what can be recorded: if it failed, nothing was attempted.
    intent, etag, created = await write
    if not created:
        raise Superseded(intent, etag)
    intent.attempts += 1
    if isinstance(failure, ActionRefused):
        intent.last_error = failure.detail
        _finish(intent, Outcome(failure.status, failure.problem()), "failed", utcnow())
    elif failure is not None:
        summary = failure.summary() if isinstance(failure, UpstreamError) else (
            "deadline passed" if isinstance(failure, TimeoutError) else "store race")
        intent.last_error = summary
        if isinstance(failure, UpstreamError) and not failure.transient:
            _finish(intent, Outcome(502, ActionRefused(502, summary).problem()), "failed",
                    utcnow())
        else:
            intent.updated_at = utcnow()
            await _save_attempt(store, intent, etag)
            raise failure
    else:
        assert outcome is not None
        # Answered now; the outcome and the tracked row are recorded in the background.
        _finish(intent, outcome, "done", utcnow())
        answered = intent.model_copy(deep=True)
        _start_bookkeeping(settings, store, intent, etag, executor, outcome)
        return answered, None
    return intent, await _save_attempt(store, intent, etag)


# --- answering before the bookkeeping writes ------------------------------------------------
#
# The immediate attempt of an HTTP call answers as soon as the action itself is done (the CRM
# activity created, the category set); the two writes that only record it - the TrackedMessage
# row's final state and the intent's outcome - go out after the answer. Until they land the
# intent is still "pending" in storage (it was written pending before anything was done), so:
# - a worker that dies in that window leaves a pending intent, which the mailbox's scheduled
#   cycle (`run_pending_intents`) carries out; the activity is found (by messageid) rather than
#   created again, and since the tracked row's claim names this intent (`claim_intent`) the
#   outcome recorded is "created", the answer the caller already had;
# - if a bookkeeping write fails, the intent is put back to pending and queued for a retry;
# - the writes are started with the answer and sent on the loop's next turns, so the caller
#   does not wait for the storage SDK to build them (a few ms of CPU);
# - in this process, every reader of the intent or of the tracked row (a replay, GET intents,
#   status, the next track/regarding/untrack of the item) first waits for the bookkeeping still
#   running (`settled`), so it reads its own answer. Another instance may, for those few ms,
#   see the row "pending": a replay there is re-attempted and answers the same activity.

_BOOKKEEPING: dict[str, asyncio.Future[None]] = {}  # "intent:<id>" / "key:<key>" -> task


def _start_bookkeeping(settings: Settings, store: Store, intent: Intent, etag: str,
                       executor: Executor, outcome: Outcome) -> asyncio.Future[None]:
    """Record an answered attempt (`_conclude`) in the background."""
    task = asyncio.ensure_future(_bookkeep(settings, store, intent, etag, executor, outcome))
    names = [f"intent:{intent.intent_id}"] + ([f"key:{executor.key}"] if executor.key else [])
    for name in names:
        _BOOKKEEPING[name] = task

    def forget(done: asyncio.Future[None]) -> None:
        for name in names:
            if _BOOKKEEPING.get(name) is done:
                del _BOOKKEEPING[name]

    task.add_done_callback(forget)
    return task


async def _bookkeep(settings: Settings, store: Store, intent: Intent, etag: str,
                    executor: Executor, outcome: Outcome) -> None:
    try:
        await _conclude(store, intent, etag, executor, outcome)
    except Exception as error:  # noqa: BLE001 - already answered: log, and leave it to a retry
        log.warning("intent %s answered but not recorded (%s): left pending for a retry",
                    intent.intent_id, type(error).__name__)
        try:
            await enqueue_retry(store, settings, intent)
        except Exception:  # noqa: BLE001 - the scheduled cycle still finds the pending intent
            log.warning("intent %s not queued; the scheduled cycle will record it",
                        intent.intent_id)


async def _await_bookkeeping(names: Sequence[str] | None) -> None:
    """Wait for the named bookkeeping tasks of this event loop (all of them when None)."""
    loop = asyncio.get_running_loop()
    found = _BOOKKEEPING.values() if names is None else (
        task for name in names if (task := _BOOKKEEPING.get(name)) is not None)
    tasks = {task for task in found if not task.done() and task.get_loop() is loop}
    if tasks:
        await asyncio.wait(tasks)


async def settled(*, intent_id: str | None = None, key: str | None = None) -> None:
    """Wait until this process's bookkeeping of an answered intent (by id) or of a tracked
    row (by key) has landed. Returns at once when there is none (the usual case)."""
    await _await_bookkeeping(([f"intent:{intent_id}"] if intent_id else [])
                             + ([f"key:{key}"] if key else []))


async def drain_bookkeeping() -> None:
    """Wait for every bookkeeping write of this event loop (before closing the store)."""
    await _await_bookkeeping(None)


async def _conclude(store: Store, intent: Intent, etag: str, executor: Executor,
                    outcome: Outcome) -> str:
    """Write the outcome of a successful attempt; both it and the action's last row write
    (when left running) are durable on return. The two go out together: if the row write
    loses a race it is redone and the outcome rewritten from it; if it fails, the intent goes
    back to pending (the retry finishes the work) and the failure is raised."""
    _finish(intent, outcome, "done", utcnow())
    pending, executor.row_write = executor.row_write, None
    if pending is None:
        return await _save_attempt(store, intent, etag)
    start_row_write, redo = pending
    row_write: asyncio.Future[Any] = asyncio.ensure_future(start_row_write())
    intent_write: asyncio.Future[str] = asyncio.ensure_future(
        _save_attempt(store, intent, etag))
    await asyncio.wait([intent_write, row_write])
    if intent_write.exception() is not None:
        row_write.exception()  # retrieved: the intent's failure is the one raised
    saved = intent_write.result()
    failure = row_write.exception()
    if failure is None:
        return saved
    if isinstance(failure, ConcurrencyError):
        try:
            outcome = await redo()
        except (UpstreamError, ConcurrencyError) as error:
            failure = error
        else:
            _finish(intent, outcome, "done", utcnow())
            return await _save_attempt(store, intent, saved)
    intent.state, intent.result = "pending", None
    intent.last_error = failure.summary() if isinstance(failure, UpstreamError) else \
        "tracked row not saved"
    intent.updated_at = utcnow()
    await _save_attempt(store, intent, saved)
    raise failure


async def _save_attempt(store: Store, intent: Intent, etag: str) -> str:
    """Save the intent; if someone else saved it first, keep a finished state over ours."""
    try:
        return await store.intents.update(intent, etag)
    except ConcurrencyError:
        found = await store.intents.get(intent.mailbox_id, intent.intent_id)
        if found is None:
            raise
        current, current_etag = found
        if current.state != "pending":
            return current_etag
        current.attempts = max(current.attempts, intent.attempts)
        current.state, current.result = intent.state, intent.result
        current.last_error, current.updated_at = intent.last_error, intent.updated_at
        return await store.intents.update(current, current_etag)


def retry_delay(settings: Settings, attempts: int) -> int:
    """Exponential back-off of the retry queue: base * 2^(attempts-1), capped at 7 days."""
    return int(min(settings.intent_retry_base_seconds * 2 ** max(0, attempts - 1), 7 * 86400))


async def enqueue_retry(store: Store, settings: Settings, intent: Intent) -> None:
    await store.intent_queue.send(
        {"mailbox_id": intent.mailbox_id, "intent_id": intent.intent_id},
        visibility_timeout=retry_delay(settings, intent.attempts))


async def handle_retry(runtime: Any, message: Mapping[str, Any]) -> str:
    """The queue trigger's work: attempt the intent app-only; on a transient failure queue it
    again with a longer delay, until INTENT_MAX_ATTEMPTS; then the scheduled cycle owns it.
    Returns what happened (for logs and tests)."""
    mailbox_id = str(message.get("mailbox_id") or "")
    intent_id = str(message.get("intent_id") or "")
    if not mailbox_id or not intent_id:
        log.warning("intent retry message without ids: dropped")
        return "invalid"
    store, settings = runtime.store, runtime.settings
    found = await store.intents.get(mailbox_id, intent_id)
    if found is None:
        log.warning("intent retry for a missing intent %s", intent_id)
        return "missing"
    intent, etag = found
    if intent.state != "pending":
        return intent.state  # a duplicate delivery, or done meanwhile: nothing to do
    try:
        intent, _ = await attempt(settings, store, intent, etag,
                                  app_actor(runtime, intent.user_object_id))
    except (UpstreamError, TimeoutError, ConcurrencyError):
        if intent.attempts < settings.intent_max_attempts:
            await enqueue_retry(store, settings, intent)
            log.info("intent %s retry queued attempts=%d", intent_id, intent.attempts)
            return "requeued"
        return await give_up(store, await store.intents.get(mailbox_id, intent_id))
    log.info("intent %s %s by retry attempts=%d", intent_id, intent.state, intent.attempts)
    return intent.state


def _cycle_takes_over(mailbox: Mailbox | None) -> bool:
    """Whether a scheduled cycle will run this mailbox's pending intents (its incoming channel
    does, see worker.run_channels)."""
    if mailbox is None or not mailbox.enabled:
        return False
    status = mailbox.channels.get(Channel.INCOMING)
    return status is not None and status.enabled


async def give_up(store: Store, found: tuple[Intent, str] | None) -> str:
    """The retry queue is done with a pending intent (out of attempts, or its message
    poisoned). An enabled mailbox's next cycle finishes it; otherwise nobody would, so it
    fails now, with a reason the add-in can show, rather than staying pending for ever.
    Idempotent, and never changes an intent that finished meanwhile (ETag)."""
    for _ in range(3):
        if found is None:
            return "missing"
        intent, etag = found
        if intent.state != "pending":
            return intent.state
        mailbox = await store.mailboxes.get(intent.mailbox_id)
        if _cycle_takes_over(mailbox[0] if mailbox else None):
            log.warning("intent %s left to the scheduled cycle after %d attempts",
                        intent.intent_id, intent.attempts)
            return "pending"
        intent.last_error = MAILBOX_NOT_ENABLED
        problem = {**ActionRefused(409, NOT_ENABLED_DETAIL).problem(),
                   "reason": MAILBOX_NOT_ENABLED}
        _finish(intent, Outcome(409, problem), "failed", utcnow())
        try:
            await store.intents.update(intent, etag)
        except ConcurrencyError:
            found = await store.intents.get(intent.mailbox_id, intent.intent_id)
            continue
        log.warning("intent %s failed: %s after %d attempts", intent.intent_id,
                    MAILBOX_NOT_ENABLED, intent.attempts)
        return "failed"
    return "pending"  # still racing: the next delivery or cycle decides


async def run_pending_intents(runtime: Any, mailbox_id: str) -> int:
    """The scheduled cycle's share: carry out every pending intent of the mailbox, app-only.
    Returns how many finished (done or failed); the rest stay pending for the next cycle."""
    store, settings = runtime.store, runtime.settings
    finished = 0
    for intent, etag in await store.intents.list_pending(mailbox_id):
        try:
            intent, _ = await attempt(settings, store, intent, etag,
                                      app_actor(runtime, intent.user_object_id))
        except (UpstreamError, TimeoutError, ConcurrencyError) as error:
            log.info("intent %s still pending: %s", intent.intent_id, type(error).__name__)
            continue
        finished += 1
    return finished


__all__ = [
    "ActionRefused",
    "Actor",
    "Executor",
    "Outcome",
    "Prefetched",
    "app_actor",
    "attempt",
    "attempt_created",
    "build_appointment",
    "build_email",
    "enqueue_retry",
    "handle_message",
    "drain_bookkeeping",
    "handle_poison",
    "handle_retry",
    "give_up",
    "abandon_pending",
    "reopen",
    "item_key",
    "outcome_of",
    "retry_delay",
    "run_pending_intents",
    "settled",
    "status_view",
    "Superseded",
]


async def handle_message(body: bytes | str) -> str:
    """Entry point of the `intent_retry` queue trigger: parse, then `handle_retry`.

    An unreadable message is logged and consumed (retrying cannot fix it, and the intent it
    meant, if any, is still pending for the scheduled cycle)."""
    import json

    from shared.runtime import get_runtime

    try:
        message = json.loads(body)
    except (ValueError, TypeError):
        log.warning("intent retry message is not JSON: dropped")
        return "invalid"
    if not isinstance(message, dict):
        log.warning("intent retry message is not an object: dropped")
        return "invalid"
    return await handle_retry(await get_runtime(), message)


async def abandon_pending(store: Store, settings: Settings, mailbox_id: str) -> int:
    """The mailbox was just disabled: the pending intents the queue already left to its cycle
    would now wait for ever, so they fail as `mailbox_not_enabled` (the ones the queue still
    retries end the same way when it gives up). Returns how many ended."""
    ended = 0
    for intent, etag in await store.intents.list_pending(mailbox_id):
        if intent.attempts >= settings.intent_max_attempts \
                and await give_up(store, (intent, etag)) == "failed":
            ended += 1
    return ended


async def reopen(store: Store, intent: Intent, etag: str) -> tuple[Intent, str]:
    """The same request again after a `mailbox_not_enabled` failure: the admin may have
    enabled the mailbox since, as the failure told the user to ask, so it is attempted afresh
    rather than replayed. Every other finished intent is left as it is."""
    body = (intent.result or {}).get("body") or {}
    if intent.state != "failed" or body.get("reason") != MAILBOX_NOT_ENABLED:
        return intent, etag
    intent.state, intent.result, intent.last_error = "pending", None, None
    intent.attempts = 0  # the queue's attempts start over with it
    intent.updated_at = utcnow()
    try:
        return intent, await store.intents.update(intent, etag)
    except ConcurrencyError:  # reopened (or finished) by a concurrent replay: take that one
        found = await store.intents.get(intent.mailbox_id, intent.intent_id)
        if found is None:
            raise
        return found


async def handle_poison(body: bytes | str) -> str:
    """Entry point of the `intent_retry_poison` queue trigger: the host moved a retry message
    aside after maxDequeueCount failed deliveries; its intent must still end somewhere."""
    import json

    from shared.runtime import get_runtime

    try:
        message = json.loads(body)
    except (ValueError, TypeError):
        return "invalid"
    if not isinstance(message, dict) or not message.get("mailbox_id") \
            or not message.get("intent_id"):
        return "invalid"
    store = (await get_runtime()).store
    found = await store.intents.get(str(message["mailbox_id"]), str(message["intent_id"]))
    return await give_up(store, found)
