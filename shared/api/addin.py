"""Outlook add-in endpoints: track, set regarding, untrack, status, should-track, record lookup,
the caller's own options, and intent status.

Every call carries the user's Office SSO token; it is validated first (401/403), then the body
(400), then the item is looked up in the caller's own mailbox (404/403) - nothing is written
before all three pass. Track, set regarding and untrack are then written as an intent and
attempted against a deadline; a miss answers 202 and the retry queue (then the scheduled cycle)
finishes the work. The user's own Graph and Dataverse permissions apply throughout (OBO).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.api.addin_models import (
    FolderRuleIn,
    IntentView,
    LookupRequest,
    LookupResponse,
    LookupResult,
    MyOptions,
    RecordRef,
    RecordView,
    SetRegardingRequest,
    ShouldTrackRequest,
    ShouldTrackResponse,
    StatusQuery,
    TrackRequest,
    UntrackRequest,
    UpdateMyOptions,
)
from shared.api.http import ApiRequest, ApiResponse
from shared.api.problem import ApiError, bad_request
from shared.dataverse import DataverseOperation
from shared.domain.correlation import RegardingRef, TrackedRef
from shared.domain.mailbox import FolderRule, Mailbox, MailboxRuleError
from shared.domain.tracking import (
    CorrelationLookups,
    MessageFacts,
    TrackingPolicy,
    decide,
)
from shared.domain.tracking_token import find_token, format_token
from shared.errors import ErrorKind, UpstreamError
from shared.graph import GraphClient
from shared.identity import Caller, obo_provider, require_scope
from shared.runtime import Runtime, get_runtime
from shared.store import intent_id_for
from shared.store.errors import ConcurrencyError
from shared.store.intents import IntentAction
from shared.sync.batching import query_path
from shared.sync.intents import (
    PARTY_TABLES,
    ActionRefused,
    Actor,
    Executor,
    Prefetched,
    Superseded,
    attempt,
    attempt_created,
    candidates_by_address,
    enqueue_retry,
    outcome_of,
    party_operations,
    resolve_all,
    retry_delay,
    settled,
    status_view,
)
from shared.sync.lifecycle import LifecycleError, MailboxService
from shared.tasks import discard, within

log = logging.getLogger("sss.addin")

IDEMPOTENCY_HEADER = "Idempotency-Key"
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,128}$")
_INTENT_ID = re.compile(r"^[0-9a-f]{40}$")


# --- who is calling, and the clients that act as them -----------------------------------------


async def authorize_user(request: ApiRequest, runtime: Runtime) -> Caller:
    """A valid user token (401 otherwise) with the add-in's delegated scope (403 otherwise)."""
    caller = await runtime.validator.validate(request.bearer)
    return require_scope(caller, runtime.settings.api_scope)


async def user_actor(runtime: Runtime, caller: Caller) -> Actor:
    """The caller acting through OBO: their own mailbox, their own CRM privileges."""
    graph, dataverse = runtime.users.get(caller.token)
    settings = runtime.settings
    provider = obo_provider(settings)

    async def warm() -> None:
        # Both OBO exchanges at once: Dataverse's starts here, in this task's first step; the
        # Graph read has started Graph's, which this shares.
        await provider.get_token(caller.token, settings.dataverse_scope)
        await provider.get_token(caller.token, settings.graph_scope)

    return Actor(object_id=caller.object_id, graph=graph, dataverse=dataverse,
                 app_dataverse=runtime.dataverse, app_graph=runtime.graph, warm=warm,
                 cold=not provider.has_token(caller.token, settings.graph_scope))


# --- helpers ----------------------------------------------------------------------------------


def idempotency_key(request: ApiRequest, caller: Caller, action: str, body: BaseModel) -> str:
    """The client's Idempotency-Key, or one derived from user + item + action + regarding."""
    given = request.header(IDEMPOTENCY_HEADER)
    if given is not None:
        if not _PRINTABLE.match(given):
            raise bad_request(IDEMPOTENCY_HEADER, "1 to 128 printable ASCII characters")
        return given
    data = body.model_dump(mode="json")
    regarding = data.get("regarding") or {}
    text = "\n".join([caller.object_id, data["item_type"], data["item_id"], action,
                      str(regarding.get("table", "")), str(regarding.get("id", ""))])
    return "derived:" + hashlib.sha256(text.encode()).hexdigest()


def _check_table(runtime: Runtime, table: str | None, field: str = "regarding.table") -> None:
    if table is not None and table not in runtime.settings.regarding_tables:
        allowed = ", ".join(runtime.settings.regarding_tables)
        raise bad_request(field, f"{table} is not an allowed table (allowed: {allowed})")


def _refusal(refusal: ActionRefused) -> ApiError:
    titles = {400: "Invalid request", 403: "Forbidden", 404: "Not found", 409: "Conflict"}
    return ApiError(refusal.status, titles.get(refusal.status, "Refused"), refusal.detail,
                    field=refusal.field)


def _replay(stored: Mapping[str, Any]) -> ApiResponse:
    status = int(stored.get("http_status", 200))
    body = dict(stored.get("body") or {})
    if status >= 400:
        raise ApiError(status, str(body.get("title", "Refused")), str(body.get("detail", "")),
                       field=body.get("field"))
    return ApiResponse(status, body)


def _pending(runtime: Runtime, intent_id: str, attempts: int) -> ApiResponse:
    delay = retry_delay(runtime.settings, max(1, attempts))
    return ApiResponse(202, {"intent_id": intent_id, "state": "pending"},
                       headers={"Location": f"/api/intents/{intent_id}",
                                "Retry-After": str(delay)})


async def _action(request: ApiRequest, action: IntentAction, model: type[BaseModel]
                  ) -> ApiResponse:
    started = time.monotonic()
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    body = request.model(model)
    key = idempotency_key(request, caller, action, body)
    payload = body.model_dump(mode="json")
    regarding = payload.get("regarding")
    _check_table(runtime, regarding["table"] if regarding else None)
    settings, store = runtime.settings, runtime.store
    mailbox_id = caller.object_id

    def remaining() -> float:
        return max(0.001, settings.immediate_deadline_seconds - (time.monotonic() - started))

    actor = await user_actor(runtime, caller)
    intent_id = intent_id_for(caller.object_id, key)
    # The stored intent (a replay?) and the validation reads go out together: both are reads,
    # so a refused or replayed request still writes nothing.
    writable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    check = asyncio.ensure_future(within(Executor(settings, store, actor).prefetch(
        payload, speculate=action == "track", writable=writable), remaining()))
    await asyncio.sleep(0)  # its requests leave first: they are the longer wait
    lookup = asyncio.ensure_future(_stored_intent(store, mailbox_id, intent_id))
    try:
        found = await lookup
    except BaseException:
        discard(check)
        raise
    pre: Prefetched | None = None
    if found is not None:
        discard(check)  # the stored intent decides; its attempt reads what it needs
        (intent, etag), created = found, False
    else:
        # Validate before anything is written: the item must be in the caller's mailbox and
        # the regarding record readable by them. Unavailable services do not refuse: the
        # intent is written and finished later (which re-checks both). A cold track may write
        # it as soon as `writable` says so (see Executor.prefetch), alongside the caller's own
        # read; should that read still refuse, the intent is taken back.
        def start_write() -> asyncio.Future[tuple[Any, str, bool]]:
            return asyncio.ensure_future(store.intents.create_or_get(
                key, user_object_id=caller.object_id, mailbox_id=mailbox_id, action=action,
                payload=payload, now=_now()))

        first: list[asyncio.Future[Any]] = [check, writable]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        early = start_write() if writable.done() and not check.done() else None
        try:
            pre = await check
        except ActionRefused as refusal:
            if early is not None:
                await _withdraw(store, early)
            raise _refusal(refusal) from None
        except (TimeoutError, UpstreamError) as error:
            if isinstance(error, UpstreamError) and not error.transient:
                if early is not None:
                    await _withdraw(store, early)
                raise
            log.info("%s validation deferred: %s", action, type(error).__name__)
        write = early or start_write()
        if pre is None:
            intent, etag, created = await write
        else:
            # The first attempt's reads overlap the intent write; its writes wait for it.
            try:
                answered, _ = await attempt_created(settings, store, actor, write, action,
                                                    payload, pre=pre, intent_id=intent_id,
                                                    within=remaining())
            except Superseded as already:  # the same request, concurrently: as if found
                intent, etag, created = already.intent, already.etag, False
            except (UpstreamError, TimeoutError, ConcurrencyError) as error:
                if not write.done() or write.cancelled() or write.exception() is not None:
                    raise  # the intent itself was not written
                intent = write.result()[0]
                log.info("%s intent %s pending after immediate attempt: %s", action,
                         intent.intent_id, type(error).__name__)
                return await _queue(runtime, intent)
            else:
                return _replay(answered.result or {})
    if intent.action != action or intent.payload != payload:
        raise ApiError(422, "Idempotency key reused",
                       f"{IDEMPOTENCY_HEADER}: already used for a different request",
                       field=IDEMPOTENCY_HEADER)
    stored = outcome_of(intent)
    if stored is not None:
        return _replay(intent.result or {})
    if found is not None or pre is not None:
        try:
            intent, etag = await attempt(settings, store, intent, etag, actor, pre=pre,
                                         within=remaining(), lease=not created)
        except (UpstreamError, TimeoutError, ConcurrencyError) as error:
            log.info("%s intent %s pending after immediate attempt: %s", action,
                     intent.intent_id, type(error).__name__)
        else:
            return _replay(intent.result or {})
    return await _queue(runtime, intent)


async def _stored_intent(store: Any, mailbox_id: str, intent_id: str) -> Any:
    """The stored intent, once this process's bookkeeping of it (if any) has landed."""
    await settled(intent_id=intent_id)
    return await store.intents.get(mailbox_id, intent_id)


async def _withdraw(store: Any, write: asyncio.Future[tuple[Any, str, bool]]) -> None:
    """Take back an intent written ahead of the caller's own read, which then refused: the
    refusal leaves nothing behind. One this request did not create is not its to remove."""
    try:
        intent, etag, created = await write
    except Exception:  # noqa: BLE001 - never written
        return
    if created:
        await store.intents.delete(intent, etag)


async def _queue(runtime: Runtime, intent: Any) -> ApiResponse:
    """A pending intent: queued for a retry, answered 202."""
    store, settings = runtime.store, runtime.settings
    try:
        await enqueue_retry(store, settings, intent)
    except Exception:  # noqa: BLE001 - the scheduled cycle still finds the pending intent
        log.warning("intent %s not queued; the scheduled cycle will carry it out",
                    intent.intent_id)
    return _pending(runtime, intent.intent_id, intent.attempts)


def _now() -> datetime:
    from shared.sync.intents import utcnow

    return utcnow()


# --- track / set regarding / untrack ----------------------------------------------------------


async def track(request: ApiRequest) -> ApiResponse:
    return await _action(request, "track", TrackRequest)


async def set_regarding(request: ApiRequest) -> ApiResponse:
    return await _action(request, "set_regarding", SetRegardingRequest)


async def untrack(request: ApiRequest) -> ApiResponse:
    return await _action(request, "untrack", UntrackRequest)


async def get_intent(request: ApiRequest) -> ApiResponse:
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    intent_id = request.route.get("intent_id", "")
    if not _INTENT_ID.match(intent_id):
        raise bad_request("intent_id", "not an intent id")
    found = await _stored_intent(runtime.store, caller.object_id, intent_id)
    if found is None:
        raise ApiError(404, "Not found", "intent was not found", field="intent_id")
    intent = found[0]
    view = IntentView(intent_id=intent.intent_id, action=intent.action, state=intent.state,
                      attempts=intent.attempts,
                      result=(intent.result or {}).get("body"), last_error=intent.last_error,
                      created_at=intent.created_at, updated_at=intent.updated_at)
    return ApiResponse(200, view.model_dump(mode="json"))


# --- status ---------------------------------------------------------------------------------


async def tracking_status(request: ApiRequest) -> ApiResponse:
    """The same answer for every participant: read from the one row per message."""
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    query = request.query_model(StatusQuery)
    actor = await user_actor(runtime, caller)
    if query.internet_message_id is not None:
        from shared.domain.addresses import normalize_message_id

        key = normalize_message_id(query.internet_message_id)
        if key is None:
            raise bad_request("query.internet_message_id", "not a message id")
        flt = f"internetMessageId eq '{key.replace(chr(39), chr(39) * 2)}'"
        copies = actor.graph.list_messages(caller.object_id, filter=flt, select=["id"], top=1)
    else:
        uid = str(query.ical_uid)
        key = f"ical:{uid}"
        copies = _events_with_uid(actor.graph, caller.object_id, uid)
    # Only participants learn a message's tracking state: the caller must hold a copy.
    row_task = asyncio.ensure_future(_tracked_row(runtime, key))
    try:
        held = False
        async for _ in copies:
            held = True
            break
    except UpstreamError as error:
        row_task.cancel()
        if error.kind in (ErrorKind.INVALID, ErrorKind.NOT_FOUND):
            raise ApiError(404, "Not found", "no such item in your mailbox") from None
        raise
    found = await row_task
    if not held:
        raise ApiError(404, "Not found", "no such item in your mailbox")
    return ApiResponse(200, status_view(key, found[0] if found else None))


async def _tracked_row(runtime: Runtime, key: str) -> Any:
    await settled(key=key)  # a track of it this process answered, still being recorded
    return await runtime.store.tracked.get(key)


async def _events_with_uid(graph: GraphClient, user: str, uid: str
                           ) -> AsyncIterator[dict[str, Any]]:
    flt = f"iCalUId eq '{uid.replace(chr(39), chr(39) * 2)}'"
    body = await graph.get_json(f"/users/{user}/events",
                                params={"$filter": flt, "$select": "id", "$top": "1"})
    for item in body.get("value", []):
        yield item


# --- should-track and lookup ------------------------------------------------------------------


async def _mailbox(runtime: Runtime, caller: Caller) -> Mailbox | None:
    found = await runtime.store.mailboxes.get(caller.object_id)
    return found[0] if found else None


async def should_track(request: ApiRequest) -> ApiResponse:
    """Whether the caller's option would track such an email, from sender/recipients/subject
    only (the body model refuses anything more)."""
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    body = request.model(ShouldTrackRequest)
    settings = runtime.settings
    mailbox = await _mailbox(runtime, caller)
    option = mailbox.tracking_option if mailbox else settings.default_tracking_option
    policy = TrackingPolicy.from_settings(settings, option=option)
    facts = MessageFacts(sender=body.sender, to=tuple(body.to), cc=tuple(body.cc),
                         subject=body.subject)
    actor = await user_actor(runtime, caller)
    ops: list[DataverseOperation] = []
    tables: list[str] = []
    if option.value.startswith("from_"):
        for table, op in party_operations([body.sender]):
            tables.append(table)
            ops.append(op)
    number = find_token(body.subject, settings.tracking_token_prefix,
                        settings.tracking_token_digits) \
        if settings.correlate_tracking_token else None
    if number is not None:
        token = format_token(number, settings.tracking_token_prefix,
                             settings.tracking_token_digits)
        ops.append(DataverseOperation.get(query_path(
            "emails", select=["activityid", "messageid"],
            filter=f"trackingtoken eq '{token}'", top=1)))
    sender_tables: list[str] = []
    by_token: dict[int, TrackedRef] = {}
    if ops:
        results = await actor.dataverse.batch(ops)
        rows: dict[str, list[dict[str, Any]]] = {}
        for table, result in zip(tables, results, strict=False):
            rows[table] = list((result.body or {}).get("value", [])) if result.ok else []
        for records in candidates_by_address(rows, [body.sender]).values():
            sender_tables += [r.table for r in records if r.is_active]
        if number is not None:
            last = results[-1]
            hits = (last.body or {}).get("value", []) if last.ok else []
            if hits:
                by_token[number] = TrackedRef(str(hits[0]["activityid"]),
                                              internet_message_id=hits[0].get("messageid"))
    decision = decide(facts, policy, sender_tables=sender_tables,
                      lookups=CorrelationLookups(by_token=by_token))
    answer = ShouldTrackResponse(track=decision.track, reason=decision.reason,
                                 explanation=decision.explanation, tracking_option=option)
    return ApiResponse(200, answer.model_dump(mode="json"))


async def lookup_records(request: ApiRequest) -> ApiResponse:
    """CRM records for addresses, as the caller may see them: table, id and name only."""
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    body = request.model(LookupRequest)
    actor = await user_actor(runtime, caller)
    ops = [DataverseOperation.get("WhoAmI")]
    tables = []
    for table, op in party_operations(body.addresses):
        tables.append(table)
        ops.append(op)
    results = await actor.dataverse.batch(ops)
    if results[0].error is not None:
        raise results[0].error
    me = str((results[0].body or {}).get("UserId") or "").lower() or None
    rows: dict[str, list[dict[str, Any]]] = {}
    for table, result in zip(tables, results[1:], strict=True):
        if result.error is not None and result.error.kind is not ErrorKind.FORBIDDEN:
            raise result.error
        rows[table] = list((result.body or {}).get("value", [])) if result.ok else []
    candidates = candidates_by_address(rows, body.addresses)
    resolutions = resolve_all(candidates, me)
    from shared.domain.addresses import normalize_address

    out = []
    for address in body.addresses:
        norm = normalize_address(address) or address.lower()
        chosen = resolutions.get(norm)
        record = RecordView(table=chosen.table, id=chosen.id, name=chosen.name) \
            if chosen is not None and chosen.table is not None and chosen.id is not None \
            else None
        matches = [RecordView(table=c.table, id=c.id, name=c.name)
                   for c in candidates.get(norm, [])]
        out.append(LookupResult(address=address, record=record, matches=matches))
    return ApiResponse(200, LookupResponse(results=out).model_dump(mode="json"))


# --- the caller's own options -----------------------------------------------------------------


def _options_view(mailbox: Mailbox) -> dict[str, Any]:
    rules = [FolderRuleIn(folder_id=r.folder_id, folder_name=r.folder_name,
                          regarding=RecordRef(table=r.regarding_table, id=r.regarding_id)
                          if r.regarding_table and r.regarding_id else None)
             for r in mailbox.folder_rules]
    return MyOptions(tracking_option=mailbox.tracking_option,
                     auto_create_records=mailbox.auto_create_records,
                     folder_rules=rules).model_dump(mode="json")


async def get_my_options(request: ApiRequest) -> ApiResponse:
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    mailbox = await _mailbox(runtime, caller)
    if mailbox is None:
        raise ApiError(404, "Not found", "your mailbox is not registered; ask an administrator")
    return ApiResponse(200, _options_view(mailbox))


async def update_my_options(request: ApiRequest) -> ApiResponse:
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    body = request.model(UpdateMyOptions)
    settings = runtime.settings
    if body.folder_rules is not None:
        if len(body.folder_rules) > settings.max_folder_rules:
            raise bad_request("folder_rules", f"at most {settings.max_folder_rules} rules")
        for index, rule in enumerate(body.folder_rules):
            if rule.regarding is not None:
                _check_table(runtime, rule.regarding.table,
                             f"folder_rules.{index}.regarding.table")
    if await _mailbox(runtime, caller) is None:
        raise ApiError(404, "Not found", "your mailbox is not registered; ask an administrator")
    if body.folder_rules:
        # Every rule's record must be one the caller may read (their own CRM security).
        actor = await user_actor(runtime, caller)
        executor = Executor(settings, runtime.store, actor)
        refs = [r.regarding for r in body.folder_rules if r.regarding is not None]
        results = await asyncio.gather(
            *(executor.read_regarding(ref.model_dump()) for ref in refs),
            return_exceptions=True)
        for result in results:
            if isinstance(result, ActionRefused):
                raise _refusal(result)
            if isinstance(result, BaseException):
                raise result
    service = MailboxService(settings, runtime.store, runtime.graph, runtime.dataverse)

    def change(mailbox: Mailbox) -> None:
        now = service.clock()
        if body.tracking_option is not None:
            mailbox.tracking_option = body.tracking_option
        if body.auto_create_records is not None:
            mailbox.auto_create_records = body.auto_create_records
        if body.folder_rules is not None:
            rules = [FolderRule(folder_id=r.folder_id, folder_name=r.folder_name,
                                regarding_table=r.regarding.table if r.regarding else None,
                                regarding_id=r.regarding.id if r.regarding else None)
                     for r in body.folder_rules]
            mailbox.set_folder_rules(rules, now, settings.max_folder_rules)
        mailbox.updated_at = now

    try:
        mailbox = await service.mutate(caller.object_id, change)
    except LifecycleError as error:
        raise ApiError(error.status, "Refused", f"{error.field}: {error.message}",
                       field=error.field) from None
    except MailboxRuleError as error:
        raise ApiError(400, "Invalid request", f"{error.field}: {error.message}",
                       field=error.field) from None
    return ApiResponse(200, _options_view(mailbox))


__all__ = [
    "PARTY_TABLES",
    "RegardingRef",
    "authorize_user",
    "get_intent",
    "get_my_options",
    "lookup_records",
    "set_regarding",
    "should_track",
    "track",
    "tracking_status",
    "untrack",
    "update_my_options",
    "user_actor",
]
