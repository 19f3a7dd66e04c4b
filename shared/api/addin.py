"""Outlook add-in endpoints that act: track, set regarding, untrack, and intent status; and who
is calling (shared with `addin_reads`: status, should-track, lookup; and `addin_options`).

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
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.api.addin_models import (
    IntentView,
    SetRegardingRequest,
    TrackRequest,
    UntrackRequest,
)
from shared.api.http import ApiRequest, ApiResponse
from shared.api.problem import ApiError, bad_request
from shared.domain.mailbox import Mailbox
from shared.errors import UpstreamError
from shared.identity import Caller, obo_provider, require_scope
from shared.runtime import Runtime, get_runtime
from shared.store import intent_id_for
from shared.store.errors import ConcurrencyError
from shared.store.intents import IntentAction
from shared.sync.intents import (
    ActionRefused,
    Actor,
    Executor,
    Prefetched,
    Superseded,
    attempt,
    attempt_created,
    enqueue_retry,
    outcome_of,
    reopen,
    retry_delay,
    settled,
)
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


async def own_mailbox(runtime: Runtime, caller: Caller) -> Mailbox | None:
    """The caller's own registered mailbox (its id is their object id), if any."""
    found = await runtime.store.mailboxes.get(caller.object_id)
    return found[0] if found else None


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
    return ApiError(refusal.status, refusal.problem()["title"], refusal.detail,
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
    if found is not None:
        intent, etag = await reopen(store, intent, etag)
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
    body = (intent.result or {}).get("body")
    view = IntentView(intent_id=intent.intent_id, action=intent.action, state=intent.state,
                      attempts=intent.attempts,
                      result=body, last_error=intent.last_error,
                      reason=(body or {}).get("reason"),
                      created_at=intent.created_at, updated_at=intent.updated_at)
    return ApiResponse(200, view.model_dump(mode="json"))


__all__ = [
    "authorize_user",
    "get_intent",
    "idempotency_key",
    "own_mailbox",
    "set_regarding",
    "track",
    "untrack",
    "user_actor",
]
