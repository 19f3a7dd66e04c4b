"""The process-wide services a trigger needs, built once per worker and event loop.

Building clients per invocation would repeat TLS handshakes and token requests on the hot path;
building them at import time would fail the whole app on one bad setting before the host can
log it. So they are built lazily, on first use, from the validated settings.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from shared.dataverse import DataverseClient
from shared.graph import GraphClient
from shared.http.retry import RetryPolicy
from shared.identity import (
    AppTokenAuth,
    OboTokenAuth,
    TokenValidator,
    aclose_obo_providers,
    credential_from_settings,
)
from shared.settings import Settings, get_settings
from shared.store import Store

log = logging.getLogger("sss.runtime")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    graph: GraphClient
    dataverse: DataverseClient
    validator: TokenValidator
    retry: RetryPolicy
    credential: Any = None

    def dataverse_as(self, object_id: str) -> DataverseClient:
        """The CRM as the mailbox owner sees it: their record and field security apply."""
        return self.dataverse.impersonate(object_id)

    def graph_for_user(self, assertion: str) -> GraphClient:
        """Graph on behalf of the add-in's user: their own mailbox only."""
        auth = OboTokenAuth(self.settings, assertion, self.settings.graph_scope)
        return GraphClient(self.settings.graph_base_url, auth, retry=self.retry,
                           timeout=self.settings.http_timeout_seconds)

    def dataverse_for_user(self, assertion: str) -> DataverseClient:
        """Dataverse on behalf of the add-in's user: their own CRM privileges."""
        auth = OboTokenAuth(self.settings, assertion, self.settings.dataverse_scope)
        return DataverseClient(self.settings.dataverse_api_url, auth, retry=self.retry,
                               timeout=self.settings.http_timeout_seconds)

    async def close(self) -> None:
        from shared.sync.intents import drain_bookkeeping

        await drain_bookkeeping()  # answered add-in actions still being recorded
        await self.graph.aclose()
        await self.dataverse.aclose()
        await self.validator.aclose()
        await self.store.close()
        await aclose_obo_providers()
        if self.credential is not None:
            await self.credential.close()


def build_runtime(settings: Settings) -> Runtime:
    retry = RetryPolicy(max_attempts=settings.retry_max_attempts,
                        max_total_wait=settings.retry_max_wait_seconds)
    credential = credential_from_settings(settings)
    graph = GraphClient(settings.graph_base_url, AppTokenAuth(credential, settings.graph_scope),
                        retry=retry, timeout=settings.http_timeout_seconds)
    dataverse = DataverseClient(settings.dataverse_api_url,
                                AppTokenAuth(credential, settings.dataverse_scope),
                                retry=retry, timeout=settings.http_timeout_seconds)
    return Runtime(
        settings=settings,
        store=Store.from_settings(settings),
        graph=graph,
        dataverse=dataverse,
        validator=TokenValidator(settings),
        retry=retry,
        credential=credential,
    )


_runtimes: dict[int, Runtime] = {}


async def get_runtime() -> Runtime:
    """The runtime of the running event loop (clients are bound to their loop)."""
    key = id(asyncio.get_running_loop())
    runtime = _runtimes.get(key)
    if runtime is None:
        runtime = _runtimes[key] = build_runtime(get_settings())
    return runtime


async def reset_runtime() -> None:
    """Close and forget every runtime (tests change settings between sessions)."""
    for runtime in list(_runtimes.values()):
        await runtime.close()
    _runtimes.clear()
    get_settings.cache_clear()
