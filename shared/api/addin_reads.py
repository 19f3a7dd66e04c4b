"""Add-in endpoints that only read: tracking status, should-track and record lookup.

Each acts as the caller (OBO): what they may see is what their own mailbox and CRM security
let them read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from shared.api.addin import authorize_user, own_mailbox, user_actor
from shared.api.addin_models import (
    LookupRequest,
    LookupResponse,
    LookupResult,
    RecordView,
    ShouldTrackRequest,
    ShouldTrackResponse,
    StatusQuery,
)
from shared.api.http import ApiRequest, ApiResponse
from shared.api.problem import ApiError, bad_request
from shared.dataverse import DataverseOperation
from shared.domain.correlation import TrackedRef
from shared.domain.tracking import (
    CorrelationLookups,
    MessageFacts,
    TrackingPolicy,
    decide,
)
from shared.domain.tracking_token import find_token, format_token
from shared.errors import ErrorKind, UpstreamError
from shared.graph import GraphClient
from shared.runtime import Runtime, get_runtime
from shared.store.tracked import Regarding, TrackedMessage
from shared.sync.batching import query_path
from shared.sync.intents import (
    ActionRefused,
    Actor,
    Executor,
    candidates_by_address,
    party_operations,
    resolve_all,
    settled,
    status_view,
)
from shared.tasks import discard

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
    # Only participants learn a message's tracking state: the caller must hold a copy. The
    # row, and the regarding record read as the caller, go out alongside that check.
    row_task = asyncio.ensure_future(_row_as_seen_by(runtime, actor, key))
    try:
        held = False
        async for _ in copies:
            held = True
            break
    except UpstreamError as error:
        discard(row_task)
        if error.kind in (ErrorKind.INVALID, ErrorKind.NOT_FOUND):
            raise ApiError(404, "Not found", "no such item in your mailbox") from None
        raise
    if not held:
        discard(row_task)
        raise ApiError(404, "Not found", "no such item in your mailbox")
    row, readable = await row_task
    return ApiResponse(200, status_view(key, row, readable=readable))


async def _row_as_seen_by(runtime: Runtime, actor: Actor, key: str
                          ) -> tuple[TrackedMessage | None, Regarding | None]:
    """The one row per message, and its regarding record as the caller reads it: None when
    their CRM security hides it (or its table is no longer allowed). Every participant sees
    the same tracked state; only what the regarding record is depends on who asks."""
    await settled(key=key)  # a track of it this process answered, still being recorded
    found = await runtime.store.tracked.get(key)
    row = found[0] if found else None
    if row is None or row.state != "tracked" or row.regarding is None:
        return row, None
    executor = Executor(runtime.settings, runtime.store, actor)
    try:
        readable = await executor.read_regarding({"table": row.regarding.table,
                                                  "id": row.regarding.id})
    except ActionRefused:
        return row, None
    return row, readable


async def _events_with_uid(graph: GraphClient, user: str, uid: str
                           ) -> AsyncIterator[dict[str, Any]]:
    flt = f"iCalUId eq '{uid.replace(chr(39), chr(39) * 2)}'"
    body = await graph.get_json(f"/users/{user}/events",
                                params={"$filter": flt, "$select": "id", "$top": "1"})
    for item in body.get("value", []):
        yield item


# --- should-track and lookup ------------------------------------------------------------------


async def should_track(request: ApiRequest) -> ApiResponse:
    """Whether the caller's option would track such an email, from sender/recipients/subject
    only (the body model refuses anything more)."""
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    body = request.model(ShouldTrackRequest)
    settings = runtime.settings
    mailbox = await own_mailbox(runtime, caller)
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


__all__ = ["lookup_records", "should_track", "tracking_status"]
