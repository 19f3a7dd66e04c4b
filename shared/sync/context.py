"""What one sync cycle works with: settings, store, clients, a clock and crash-point hooks.

Engines take this instead of the process-wide Runtime so tests and benchmarks can drive time
(`clock`) and kill a worker at a named step (`hooks`) without monkeypatching.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.dataverse import DataverseClient
from shared.graph import GraphClient
from shared.settings import Settings
from shared.store import Store

Clock = Callable[[], datetime]
Hook = Callable[[str], Awaitable[None] | None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SyncContext:
    settings: Settings
    store: Store
    graph: GraphClient
    dataverse: DataverseClient
    clock: Clock = utcnow
    hooks: list[Hook] = field(default_factory=list)

    @classmethod
    def from_runtime(cls, runtime: Any, *, clock: Clock = utcnow) -> SyncContext:
        return cls(runtime.settings, runtime.store, runtime.graph, runtime.dataverse, clock)

    async def checkpoint(self, name: str) -> None:
        """A named step of a cycle; tests raise here to simulate a worker killed at it."""
        for hook in self.hooks:
            outcome = hook(name)
            if inspect.isawaitable(outcome):
                await outcome


__all__ = ["Clock", "Hook", "SyncContext", "utcnow"]
