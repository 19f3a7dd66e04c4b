"""Scheduler tick cost: 100,000 registered mailboxes (1,000 due) against 1,000 (all due).

Rows are written straight through the repositories' entity shapes in batch transactions;
the tick itself is the production `run_tick`. Storage requests are counted by the store's
request counter (every HTTP attempt), wall time by perf_counter.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from bench.common import app_settings, azurite, table, write

DUE = 1000


async def _populate(store: Any, registered: int, due: int, now: datetime) -> None:
    from shared.domain.mailbox import Mailbox, TestResult
    from shared.store.keys import due_bucket
    from shared.store.mailboxes import MailboxRepository

    due_table = await store.clients.table("due")
    mb_table = await store.clients.table("mailboxes")
    pending_due: dict[str, list[dict[str, Any]]] = {}
    mailboxes: list[dict[str, Any]] = []
    for n in range(registered):
        mid = f"m{n:07d}"
        when = now - timedelta(minutes=1 + n % 5) if n < due else \
            now + timedelta(minutes=1 + n % 12, seconds=n % 60)
        pending_due.setdefault(due_bucket(when), []).append(
            {"PartitionKey": due_bucket(when), "RowKey": mid, "dueAt": when})
        if n < due:  # only due mailboxes are read by a tick; the rest exist as index rows
            box = Mailbox.new(owner_object_id=mid, email=f"{mid}@contoso.com", now=now)
            box.approve(now)
            box.apply_test_results({c: TestResult.SUCCESS for c in box.channels}, now)
            for status in box.channels.values():
                status.next_due_at = when
            mailboxes.append(MailboxRepository._entity(box))
    jobs = []
    for rows in pending_due.values():
        for start in range(0, len(rows), 100):
            chunk = rows[start:start + 100]
            jobs.append(due_table.submit_transaction(
                [("upsert", r, {"mode": UpdateMode.REPLACE}) for r in chunk]))
    for start in range(0, len(mailboxes), 100):
        chunk = mailboxes[start:start + 100]
        jobs.append(mb_table.submit_transaction(
            [("upsert", r, {"mode": UpdateMode.REPLACE}) for r in chunk]))
    gate = asyncio.Semaphore(16)

    async def run(job: Any) -> None:
        async with gate:
            await job

    await asyncio.gather(*(run(j) for j in jobs))


async def measure(handle: Any, registered: int) -> dict[str, Any]:
    from shared.store import Store
    from shared.sync.scheduler import run_tick

    settings = app_settings(None, handle)
    now = datetime.now(UTC)
    async with Store.from_settings(settings) as store:
        started = time.perf_counter()
        await _populate(store, registered, DUE, now)
        setup = time.perf_counter() - started
        # create the queue and the lease table outside the measured tick (first use only)
        await store.clients.queue(settings.sync_queue_name)
        await store.clients.table("leases")
        before = store.request_count
        started = time.perf_counter()
        result = await run_tick(settings, store, now)
        wall = time.perf_counter() - started
        return {"registered": registered, "due": DUE, "enqueued": result.enqueued,
                "storage_requests": store.request_count - before,
                "requests_per_due": round((store.request_count - before) / DUE, 2),
                "wall_seconds": round(wall, 3), "setup_seconds": round(setup, 1)}


async def main() -> dict[str, Any]:
    with azurite() as handle:
        rows = [await measure(handle, DUE), await measure(handle, 100_000)]
    print(table(rows))
    data = {"rows": rows}
    print("wrote", write("scheduler", data))
    return data


if __name__ == "__main__":
    asyncio.run(main())
