"""Incoming throughput: a 5,000-message backlog in one mailbox, with 0 and 20 ms of added
latency on every Graph and Dataverse request. Reports messages per second, HTTP requests and
operations per message for both services (as the sandbox counted them: a $batch is one
request and N operations), our own CPU per message (process time of this worker process; the
sandbox runs in another) and the worker's peak RSS. Then the idle cost of one more cycle.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from typing import Any

from bench.common import app_settings, azurite, sandbox, table, write

BACKLOG = 5000
ALEX = "a1a1a1a1-0000-4000-8000-000000000001"


async def _enable(runtime: Any, *, option: str = "all", folder_rules: list | None = None
                  ) -> None:
    from shared.settings import TrackingOption
    from shared.sync.lifecycle import MailboxService

    service = MailboxService(runtime.settings, runtime.store, runtime.graph, runtime.dataverse)
    await service.register(email=None, owner_object_id=ALEX)
    await service.approve(ALEX)

    def configure(mailbox: Any) -> None:
        mailbox.tracking_option = TrackingOption(option)
        if folder_rules:
            mailbox.folder_rules = folder_rules

    await service.mutate(ALEX, configure)
    enabled = await service.test_and_enable(ALEX)
    assert enabled.enabled


def _counters(box: Any) -> dict[str, int]:
    raw = box.counters()
    out = dict(raw.get("requests", {}))
    for key, value in raw.get("operations", {}).items():
        out[f"{key}_ops"] = value
    return out


async def run_backlog(box: Any, store_handle: Any, latency_ms: int) -> dict[str, Any]:
    from shared.runtime import build_runtime
    from shared.sync.context import SyncContext
    from shared.sync.incoming import IncomingEngine

    box.reset()
    box.clear_faults()
    settings = app_settings(box, store_handle)
    runtime = build_runtime(settings)
    try:
        await _enable(runtime)
        made = box.control.post("/_sandbox/graph/bulk-deliver", json={
            "to": ["alex@contoso.com"], "count": BACKLOG}, timeout=300)
        made.raise_for_status()
        if latency_ms:
            box.faults({"service": "graph", "kind": "latency", "latency_ms": latency_ms,
                        "count": None},
                       {"service": "dataverse", "kind": "latency", "latency_ms": latency_ms,
                        "count": None})
        box.control.delete("/_sandbox/counters")
        found = await runtime.store.mailboxes.get(ALEX)
        assert found is not None
        ctx = SyncContext.from_runtime(runtime)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = await IncomingEngine(ctx, found[0]).run()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        counts = _counters(box)
        box.clear_faults()
        messages = result.created + result.linked
        per = max(1, messages)
        return {
            "latency_ms": latency_ms, "messages": messages, "pages": result.pages,
            "msgs_per_s": round(messages / wall, 1), "wall_s": round(wall, 1),
            "graph_req_per_msg": round(counts.get("graph", 0) / per, 4),
            "graph_ops_per_msg": round(counts.get("graph_ops", counts.get("graph", 0)) / per,
                                       4),
            "dv_req_per_msg": round(counts.get("dataverse", 0) / per, 4),
            "dv_ops_per_msg": round(counts.get("dataverse_ops", counts.get("dataverse", 0))
                                    / per, 4),
            "cpu_ms_per_msg": round(cpu * 1000 / per, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "raw_counters": counts,
        }
    finally:
        await runtime.close()


async def main() -> dict[str, Any]:
    with azurite() as store_handle, sandbox() as box:
        rows = [await run_backlog(box, store_handle, 0),
                await run_backlog(box, store_handle, 20)]
    print(table([{k: v for k, v in r.items() if k != "raw_counters"} for r in rows]))
    data = {"backlog": BACKLOG, "rows": rows, "python": sys.version.split()[0]}
    print("wrote", write("incoming", data))
    return data


if __name__ == "__main__":
    asyncio.run(main())
