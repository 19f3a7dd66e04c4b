"""The process-wide services a trigger needs, built once per worker and event loop.

Building clients per invocation would repeat TLS handshakes and token requests on the hot path;
building them at import time would fail the whole app on one bad setting before the host can
log it. So they are built lazily, on first use, from the validated settings.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from shared.dataverse import DataverseClient
from shared.graph import GraphClient
from shared.graph.concurrency import MailboxGate
from shared.http.retry import RetryPolicy
from shared.http.transport import AiohttpTransport
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


class UserClients:
    """On-behalf-of clients per caller token, over two shared connection pools.

    A new client per add-in call would cost a TLS handshake per call on the track path;
    sharing the transports keeps connections warm while each client carries its own user's
    OBO auth. Keyed by a hash of the token, never the token itself. Every Graph client shares
    the worker's `mailbox_gate` with the app's own, so together they keep to Graph's
    per-mailbox concurrency limit.
    """

    def __init__(self, settings: Settings, retry: RetryPolicy, max_entries: int = 256, *,
                 mailbox_gate: MailboxGate | None = None) -> None:
        self.settings = settings
        self.retry = retry
        self.max_entries = max_entries
        self.mailbox_gate = mailbox_gate or MailboxGate()
        self.graph_transport = AiohttpTransport()
        self.dataverse_transport = AiohttpTransport()
        self._clients: OrderedDict[str, tuple[GraphClient, DataverseClient]] = OrderedDict()

    def get(self, assertion: str) -> tuple[GraphClient, DataverseClient]:
        key = hashlib.sha256(assertion.encode()).hexdigest()
        found = self._clients.get(key)
        if found is not None:
            self._clients.move_to_end(key)
            return found
        settings = self.settings
        graph = GraphClient(settings.graph_base_url,
                            OboTokenAuth(settings, assertion, settings.graph_scope),
                            transport=self.graph_transport, retry=self.retry,
                            timeout=settings.http_timeout_seconds,
                            mailbox_gate=self.mailbox_gate)
        dataverse = DataverseClient(settings.dataverse_api_url,
                                    OboTokenAuth(settings, assertion, settings.dataverse_scope),
                                    transport=self.dataverse_transport, retry=self.retry,
                                    timeout=settings.http_timeout_seconds)
        self._clients[key] = (graph, dataverse)
        while len(self._clients) > self.max_entries:
            self._clients.popitem(last=False)  # shared transports: nothing to close
        return graph, dataverse

    async def aclose(self) -> None:
        self._clients.clear()
        await self.graph_transport.aclose()
        await self.dataverse_transport.aclose()


@dataclass
class Runtime:
    settings: Settings
    store: Store
    graph: GraphClient
    dataverse: DataverseClient
    validator: TokenValidator
    retry: RetryPolicy
    credential: Any = None
    users: UserClients = field(init=False)

    def __post_init__(self) -> None:
        # the app-only client's gate, shared with every OBO client: one per worker and loop
        self.users = UserClients(self.settings, self.retry,
                                 mailbox_gate=self.graph.mailbox_gate)

    def dataverse_as(self, object_id: str) -> DataverseClient:
        """The CRM as the mailbox owner sees it: their record and field security apply."""
        return self.dataverse.impersonate(object_id)

    async def close(self) -> None:
        from shared.sync.intents import drain_bookkeeping

        await drain_bookkeeping()  # answered add-in actions still being recorded
        await self.graph.aclose()
        await self.dataverse.aclose()
        await self.users.aclose()
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
                        retry=retry, timeout=settings.http_timeout_seconds,
                        mailbox_gate=MailboxGate())
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
        _freeze_start_up()
    return runtime


_frozen = False


def _freeze_start_up() -> None:
    """Take what start-up made (the imported SDKs, the clients) out of the collector's
    rounds, once per process: a full collection otherwise walks all of it, pausing the event
    loop for 50-70 ms in the middle of whatever call triggers it (seen in
    `python -m bench.track_latency`)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


async def reset_runtime() -> None:
    """Close and forget every runtime (tests change settings between sessions)."""
    for runtime in list(_runtimes.values()):
        await runtime.close()
    _runtimes.clear()
    get_settings.cache_clear()
