"""Small asyncio helpers the add-in path shares: deadlines and tasks left to finish alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def within(work: Awaitable[T], seconds: float | None) -> T:
    """`work` with a deadline (TimeoutError), run in the caller's own task: unlike
    `asyncio.wait_for` on Python 3.11 it adds no task, so the work's first requests leave in
    the caller's current step rather than a loop turn later."""
    async with asyncio.timeout(seconds):
        return await work


def left_alone(task: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """A task nobody may await: its failure is retrieved, not logged as never retrieved."""
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


def discard(task: asyncio.Future[Any]) -> None:
    """Cancel a task whose answer is no longer needed, without logging its failure."""
    left_alone(task).cancel()
