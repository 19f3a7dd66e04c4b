"""Helpers of the sync end-to-end tests: enable mailboxes through the admin functions, run
scheduler ticks and drain the sync queue through function_app.py, inspect CRM and mailboxes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fixtures.app import FunctionHost, decode_queue_text

# shared.* is imported inside the helpers: importing the app's clients before the sandbox
# fixture exports SSL_CERT_FILE would pin an SSL context that does not trust the sandbox CA.

ALEX = "a1a1a1a1-0000-4000-8000-000000000001"
MEGAN = "a1a1a1a1-0000-4000-8000-000000000002"
NESTOR = "a1a1a1a1-0000-4000-8000-000000000003"
ALEX_UPN, MEGAN_UPN, NESTOR_UPN = "alex@contoso.com", "megan@contoso.com", "nestor@contoso.com"
ALEX_SU = "51a1a1a1-0000-4000-8000-000000000001"
ANA = "c0000000-0000-4000-8000-000000000001"
BOB = "c0000000-0000-4000-8000-000000000002"
FABRIKAM = "ac000000-0000-4000-8000-000000000001"
DAN_LEAD = "1e000000-0000-4000-8000-000000000001"
OPPORTUNITY = "0b000000-0000-4000-8000-000000000001"
CATEGORY = "Tracked to Dynamics 365"


async def enable(host: FunctionHost, oid: str, **changes: Any) -> dict[str, Any]:
    """Register, approve, configure (PATCH body) and test-and-enable a mailbox.

    Unless told otherwise, mail from 2026 on is processed, so the seeded Inbox history is
    part of the first cycle (by default enabling only processes mail received afterwards).
    """
    changes.setdefault("process_email_from", "2026-01-01T00:00:00+00:00")
    changes = {k: v for k, v in changes.items() if v is not None}
    token = host.admin_token()
    response = await host.http("admin_register_mailbox", "POST", "admin/mailboxes",
                               body={"owner_object_id": oid}, token=token)
    assert response.status == 201, response.body
    route = {"mailbox_id": oid}
    response = await host.http("admin_approve_mailbox", "POST",
                               f"admin/mailboxes/{oid}/approve", route=route, token=token)
    assert response.status == 200, response.body
    if changes:
        response = await host.http("admin_update_mailbox", "PATCH", f"admin/mailboxes/{oid}",
                                   route=route, body=changes, token=token)
        assert response.status == 200, response.body
    response = await host.http("admin_test_enable_mailbox", "POST",
                               f"admin/mailboxes/{oid}/test-enable", route=route, token=token)
    assert response.status == 200 and response.json()["enabled"], response.body
    return response.json()


async def mailbox_status(host: FunctionHost, oid: str) -> dict[str, Any]:
    response = await host.http("admin_get_mailbox", "GET", f"admin/mailboxes/{oid}",
                               route={"mailbox_id": oid}, token=host.admin_token())
    assert response.status == 200, response.body
    return response.json()


async def patch_mailbox(host: FunctionHost, oid: str, **changes: Any) -> dict[str, Any]:
    response = await host.http("admin_update_mailbox", "PATCH", f"admin/mailboxes/{oid}",
                               route={"mailbox_id": oid}, body=changes,
                               token=host.admin_token())
    assert response.status == 200, response.body
    return response.json()


async def queued_jobs(host: FunctionHost | None = None) -> list[dict[str, Any]]:
    """Receive and delete every message on the sync queue (what the host would deliver)."""
    from shared.runtime import get_runtime

    runtime = await get_runtime()
    queue = await runtime.store.clients.queue(runtime.settings.sync_queue_name, base64=False)
    jobs = []
    while True:
        batch = [m async for m in queue.receive_messages(max_messages=32, visibility_timeout=60)]
        if not batch:
            return jobs
        for message in batch:
            jobs.append(decode_queue_text(message.content))
            await queue.delete_message(message)


async def tick_and_drain(host: FunctionHost) -> list[dict[str, Any]]:
    """The scheduler timer, then every queued job through the sync_mailbox function."""
    await host.timer("scheduler_tick")
    jobs = await queued_jobs(host)
    for job in jobs:
        await host.queue("sync_mailbox", job)
    return jobs


def later(minutes: float) -> Callable[[], datetime]:
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    return lambda: at


async def context(clock: Callable[[], datetime] | None = None) -> Any:
    from shared.runtime import get_runtime
    from shared.sync.context import SyncContext

    runtime = await get_runtime()
    ctx = SyncContext.from_runtime(runtime)
    if clock is not None:
        ctx.clock = clock
    return ctx


async def cycle_at(minutes: float, ctx: Any = None) -> list[Any]:
    """A scheduler tick and its jobs as if `minutes` had passed (no sleeping)."""
    from shared.sync.scheduler import run_tick
    from shared.sync.worker import run_job

    ctx = ctx or await context()
    clock = later(minutes)
    ctx.clock = clock
    tick = await run_tick(ctx.settings, ctx.store, clock(), dataverse=ctx.dataverse)
    outcomes = []
    for job in await queued_jobs():
        outcomes.append(await run_job(ctx, job))
    assert tick.enqueued == len(outcomes)
    return outcomes


def deliver(host: FunctionHost, **message: Any) -> list[dict[str, Any]]:
    response = host.sandbox.control.post("/_sandbox/graph/deliver", json=message)
    assert response.status_code == 201, response.text
    return response.json()["value"]


def crm(host: FunctionHost, entity_set: str) -> list[dict[str, Any]]:
    response = host.sandbox.control.get(f"/_sandbox/crm/{entity_set}")
    assert response.status_code == 200, response.text
    return response.json()["value"]


def crm_create(host: FunctionHost, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
    response = host.sandbox.control.post(f"/_sandbox/crm/{entity_set}", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def emails_by_messageid(host: FunctionHost, message_id: str) -> list[dict[str, Any]]:
    from shared.domain.addresses import normalize_message_id

    wanted = normalize_message_id(message_id)
    return [e for e in crm(host, "emails") if normalize_message_id(e.get("messageid")) == wanted]


def messages(host: FunctionHost, upn: str, folder: str | None = None) -> list[dict[str, Any]]:
    params = {"folder": folder} if folder else {}
    response = host.sandbox.control.get(f"/_sandbox/graph/mailboxes/{upn}/messages",
                                        params=params)
    assert response.status_code == 200, response.text
    return response.json()["value"]


def copy_of(host: FunctionHost, upn: str, message_id: str) -> dict[str, Any]:
    from shared.domain.addresses import normalize_message_id

    wanted = normalize_message_id(message_id)
    found = [m for m in messages(host, upn)
             if normalize_message_id(m.get("internetMessageId")) == wanted]
    assert len(found) == 1, f"{len(found)} copies in {upn}"
    return found[0]


def parties(email: dict[str, Any], mask: int) -> list[dict[str, Any]]:
    return [p for p in email.get("email_activity_parties") or []
            if p.get("participationtypemask") == mask]


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)[:3000]
