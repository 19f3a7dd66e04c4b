"""Storage service clients built from the app settings, plus lazy table and queue creation.

One TableServiceClient and one QueueServiceClient per process share their HTTP session; every
repository borrows them through `StorageClients`, which also remembers which tables and queues
it already created so "create on first use" costs one request per process, not per call.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from shared.settings import Settings

from .errors import AlreadyExists, mapped_errors

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


class RequestCounter:
    """Counts storage HTTP requests (retries included) so benchmarks can prove costs.

    Installed as the SDKs' `raw_request_hook`, which runs once per attempt.
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, request: Any) -> None:
        self.count += 1

    def reset(self) -> None:
        self.count = 0


class StorageClients:
    """The table and queue service clients, and the names already known to exist."""

    def __init__(
        self,
        tables: TableServiceClient,
        queues: QueueServiceClient,
        *,
        table_prefix: str,
        counter: RequestCounter | None = None,
        credential: Any = None,
    ) -> None:
        self.tables = tables
        self.queues = queues
        self.table_prefix = table_prefix
        self.counter = counter or RequestCounter()
        self._credential = credential
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[tuple[str, bool], QueueClient] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, counter: RequestCounter | None = None
    ) -> StorageClients:
        """Connection string (Azurite, keys) or identity-based `AzureWebJobsStorage__*`."""
        counter = counter or RequestCounter()
        options: dict[str, Any] = {"raw_request_hook": counter,
                                   "use_env_settings": environment_settings_in_use()}
        if settings.storage_connection_string:
            conn = settings.storage_connection_string
            tables = TableServiceClient.from_connection_string(conn, **options)
            queues = QueueServiceClient.from_connection_string(conn, **options)
            return cls(tables, queues, table_prefix=settings.table_prefix, counter=counter)

        credential = _identity_credential(settings)
        account = settings.storage_account_name
        table_uri = settings.storage_table_service_uri or (
            f"https://{account}.table.core.windows.net" if account else None
        )
        queue_uri = settings.storage_queue_service_uri or (
            f"https://{account}.queue.core.windows.net" if account else None
        )
        if not table_uri or not queue_uri:
            raise ValueError(
                "AzureWebJobsStorage__accountName (or both __tableServiceUri and "
                "__queueServiceUri) must be set for identity-based storage"
            )
        tables = TableServiceClient(endpoint=table_uri, credential=credential, **options)
        queues = QueueServiceClient(account_url=queue_uri, credential=credential, **options)
        return cls(
            tables, queues, table_prefix=settings.table_prefix, counter=counter,
            credential=credential,
        )

    def table_name(self, name: str) -> str:
        full = f"{self.table_prefix}{name}"
        if not _TABLE_NAME.match(full):
            raise ValueError(f"invalid table name {full!r}: letters and digits only, 3-63")
        return full

    async def table(self, name: str) -> TableClient:
        """The client of table `prefix+name`, creating the table the first time."""
        client = self._tables.get(name)
        if client is not None:
            return client
        async with self._lock:
            client = self._tables.get(name)
            if client is None:
                full = self.table_name(name)
                try:
                    with mapped_errors(f"table {full}"):
                        await self.tables.create_table(full)
                except AlreadyExists:
                    pass
                client = self.tables.get_table_client(full)
                self._tables[name] = client
        return client

    async def queue(self, name: str, *, base64: bool = True) -> QueueClient:
        """The client of queue `name`, creating the queue the first time.

        base64 because the Functions queue trigger decodes base64 by default.
        """
        key = (name, base64)
        client = self._queues.get(key)
        if client is not None:
            return client
        async with self._lock:
            client = self._queues.get(key)
            if client is None:
                policies: dict[str, Any] = {}
                if base64:
                    policies = {
                        "message_encode_policy": TextBase64EncodePolicy(),
                        "message_decode_policy": TextBase64DecodePolicy(),
                    }
                client = self.queues.get_queue_client(name, **policies)
                try:
                    with mapped_errors(f"queue {name}"):
                        await client.create_queue()
                except AlreadyExists:
                    pass
                self._queues[key] = client
        return client

    async def close(self) -> None:
        for client in self._queues.values():
            await client.close()
        await self.tables.close()
        await self.queues.close()
        if self._credential is not None and hasattr(self._credential, "close"):
            await self._credential.close()


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY")


def environment_settings_in_use() -> bool:
    """Whether the storage SDKs should read proxy variables and ~/.netrc (aiohttp `trust_env`).

    With `trust_env` aiohttp reads ~/.netrc and the proxy variables in a worker thread on every
    request: two thread hand-offs per Table/Queue call, on the add-in's hot path. Proxies and
    netrc are deployment settings, so they are looked at once, here: when none is configured
    the per-request lookups are switched off; when one is, the SDK honours it as before."""
    if any(os.environ.get(name) or os.environ.get(name.lower()) for name in _PROXY_VARIABLES):
        return True
    netrc = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    return Path(netrc).is_file()


def _identity_credential(settings: Settings) -> Any:
    """Managed identity when asked (`__credential=managedidentity`), else the default chain."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if (settings.storage_credential or "").lower() == "managedidentity":
        if settings.storage_client_id:
            return ManagedIdentityCredential(client_id=settings.storage_client_id)
        return ManagedIdentityCredential()
    return DefaultAzureCredential()


__all__ = ["RequestCounter", "StorageClients", "environment_settings_in_use"]
