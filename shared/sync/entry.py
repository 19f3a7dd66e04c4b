"""What the two sync triggers call: parse the input, build the context, run, log.

Kept out of function_app.py so the triggers stay one line each, and out of the engines so
those never touch the process-wide runtime.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.runtime import get_runtime

from .context import SyncContext
from .scheduler import TickResult, run_tick
from .worker import JobOutcome, run_job

log = logging.getLogger("sss.sync")


async def tick(*, past_due: bool = False) -> TickResult:
    if past_due:
        log.warning("scheduler timer is past due: running the missed tick now")
    runtime = await get_runtime()
    ctx = SyncContext.from_runtime(runtime)
    return await run_tick(runtime.settings, runtime.store, ctx.clock(),
                          dataverse=runtime.dataverse)


def parse_job(body: bytes | str) -> dict[str, Any] | None:
    try:
        job = json.loads(body)
    except ValueError:
        return None
    if not isinstance(job, dict) or not isinstance(job.get("mailbox_id"), str):
        return None
    return job


async def handle_job(body: bytes | str) -> JobOutcome | None:
    """Run one sync job; a malformed message is logged and dropped (retrying cannot fix
    it), while a store outage raises so the host redelivers the message."""
    job = parse_job(body)
    if job is None:
        log.error("sync queue: dropping a malformed job message")
        return None
    runtime = await get_runtime()
    return await run_job(SyncContext.from_runtime(runtime), job)


__all__ = ["handle_job", "parse_job", "tick"]
