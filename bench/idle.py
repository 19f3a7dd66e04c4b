"""Idle cost: an enabled mailbox with nothing new, one tracked folder besides the Inbox.

After two cycles have absorbed everything (the second one sees the category changes the first
made), the counters are reset and one more scheduler tick + job runs. Reported per tick (the
org-wide Pending Send scan, independent of how many mailboxes are due) and per mailbox job.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import app_settings, azurite, sandbox, table, write
from bench.incoming import _counters, _enable


async def main() -> dict[str, Any]:
    from shared.domain.mailbox import FolderRule
    from shared.runtime import build_runtime
    from shared.sync.context import SyncContext
    from shared.sync.scheduler import run_tick
    from shared.sync.worker import run_job

    with azurite() as store_handle, sandbox() as box:
        box.reset()
        settings = app_settings(box, store_handle)
        runtime = build_runtime(settings)
        try:
            folders = box.control.get(
                "/_sandbox/graph/mailboxes/alex@contoso.com/folders").json()["value"]
            deals = next(f for f in folders if f["displayName"] == "Fabrikam deals")
            await _enable(runtime, folder_rules=[FolderRule(folder_id=deals["id"])])
            ctx = SyncContext.from_runtime(runtime)
            rows = []
            for n, minutes in enumerate((0, 13, 26)):
                at = datetime.now(UTC) + timedelta(minutes=minutes)
                ctx.clock = lambda at=at: at
                if n == 2:
                    box.control.delete("/_sandbox/counters")
                tick = await run_tick(settings, runtime.store, at, dataverse=runtime.dataverse)
                after_tick = _counters(box) if n == 2 else {}
                queue = await runtime.store.clients.queue(settings.sync_queue_name,
                                                          base64=False)
                from tests.fixtures.app import decode_queue_text

                jobs = [decode_queue_text(m.content) async for m in
                        queue.receive_messages(max_messages=32)]
                await queue.clear_messages()
                for job in jobs:
                    await run_job(ctx, job)
                if n == 2:
                    total = _counters(box)
                    rows.append({
                        "delta_folders": 2, "jobs": len(jobs), "enqueued": tick.enqueued,
                        "tick_dataverse_requests": after_tick.get("dataverse", 0),
                        "tick_graph_requests": after_tick.get("graph", 0),
                        "job_graph_requests": total.get("graph", 0) - after_tick.get("graph",
                                                                                       0),
                        "job_dataverse_requests": total.get("dataverse", 0)
                        - after_tick.get("dataverse", 0),
                    })
        finally:
            await runtime.close()
    print(table(rows))
    data = {"rows": rows}
    print("wrote", write("idle", data))
    return data


if __name__ == "__main__":
    asyncio.run(main())
