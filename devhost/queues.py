"""Queue triggers and queue output bindings over azure-storage-queue (Azurite or a real account).

Mirrors the Storage Queues extension: base64 message bodies by default, batches of
`batchSize` fetched again once in-flight work drops to `newBatchThreshold`, exponential
polling back-off up to `maxPollingInterval`, failures released with `visibilityTimeout`,
and after `maxDequeueCount` failed deliveries the message is copied to `<queue>-poison`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueMessage as StorageMessage
from azure.storage.queue.aio import QueueClient

from .config import (
    QueueOptions,
    StorageConnection,
    resolve_connection,
    resolve_placeholders,
)
from .functions import FunctionSpec, Invocation, invoke, log_invocation

log = logging.getLogger("devhost")

MIN_POLLING_INTERVAL = 0.1  # seconds; the extension's floor
# Messages are received invisible for 10 minutes and the lease renewed halfway, as the
# extension does, so a slow invocation is not delivered twice.
LEASE_SECONDS = 600


class QueueClients:
    """One QueueClient per (connection, queue), closed together when the host stops."""

    def __init__(self) -> None:
        self._clients: dict[tuple[StorageConnection, str], QueueClient] = {}
        self._created: set[tuple[StorageConnection, str]] = set()
        self._credential: Any = None

    def get(self, connection: StorageConnection, queue_name: str) -> QueueClient:
        key = (connection, queue_name)
        client = self._clients.get(key)
        if client is None:
            if connection.connection_string:
                client = QueueClient.from_connection_string(
                    connection.connection_string, queue_name
                )
            else:
                if self._credential is None:
                    from azure.identity.aio import DefaultAzureCredential

                    self._credential = DefaultAzureCredential()
                client = QueueClient(
                    str(connection.queue_service_uri), queue_name, credential=self._credential
                )
            self._clients[key] = client
        return client

    async def ensure(self, connection: StorageConnection, queue_name: str) -> QueueClient:
        """The client for queue_name, creating the queue the first time (the host does too)."""
        client = self.get(connection, queue_name)
        key = (connection, queue_name)
        if key not in self._created:
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            self._created.add(key)
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._credential is not None:
            await self._credential.close()
            self._credential = None


def encode_message(data: str | bytes, encoding: str) -> str:
    """Message text as the extension writes it: base64 of the UTF-8 bytes by default."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8")


def decode_message(content: str, encoding: str) -> bytes:
    """The body bytes a function sees; invalid base64 raises ValueError (-> poison)."""
    if encoding == "base64":
        try:
            return base64.b64decode(content.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"message is not valid base64: {exc}") from None
    return content.encode("utf-8")


def _output_items(value: Any) -> list[str | bytes]:
    """What a queue output binding accepts: str, bytes, QueueMessage, JSON values, or a list."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [item for v in value for item in _output_items(v)]
    if isinstance(value, str | bytes | bytearray):
        return [value if isinstance(value, str) else bytes(value)]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    return [json.dumps(value)]


class OutputSender:
    """Flushes a successful invocation's queue output bindings, like the host after return."""

    def __init__(
        self,
        clients: QueueClients,
        environ: Mapping[str, str],
        options: QueueOptions,
        on_sent: Any = None,
    ) -> None:
        self._clients = clients
        self._environ = environ
        self._options = options
        self._on_sent = on_sent

    async def __call__(self, spec: FunctionSpec, outcome: Invocation) -> None:
        for binding in spec.output_bindings():
            if binding.get("type") != "queue":
                continue
            name = binding.get("name")
            value = outcome.result if name == "$return" else outcome.outputs.get(str(name))
            items = _output_items(value)
            if not items:
                continue
            where = f"Function '{spec.name}' queue output '{name}'"
            queue_name = resolve_placeholders(str(binding.get("queueName")), self._environ, where)
            connection = resolve_connection(binding.get("connection"), self._environ, where)
            client = await self._clients.ensure(connection, queue_name)
            for item in items:
                await client.send_message(encode_message(item, self._options.message_encoding))
            if self._on_sent is not None:
                self._on_sent(queue_name)


class QueueListener:
    """Polls one queue for one queue-triggered function."""

    def __init__(
        self,
        spec: FunctionSpec,
        environ: Mapping[str, str],
        options: QueueOptions,
        clients: QueueClients,
    ) -> None:
        self.spec = spec
        self.options = options
        where = f"Function '{spec.name}' queue trigger"
        self.queue_name = resolve_placeholders(
            str(spec.trigger.get("queueName") or ""), environ, where
        )
        if not self.queue_name:
            raise ValueError(f"{where}: queueName is empty")
        self.poison_name = f"{self.queue_name}-poison"
        self.connection = resolve_connection(spec.trigger.get("connection"), environ, where)
        self._clients = clients
        self._inflight: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._poked = False

    @property
    def client(self) -> QueueClient:
        return self._clients.get(self.connection, self.queue_name)

    async def prepare(self) -> None:
        await self._clients.ensure(self.connection, self.queue_name)

    def resume(self) -> None:
        """Allow run() again after a stop (a host may be started more than once)."""
        self._stopping = False

    def wake(self) -> None:
        """Poll now instead of waiting out the back-off (new work was just enqueued)."""
        self._poked = True
        self._wake.set()

    async def _receive(self, count: int) -> list[StorageMessage]:
        if count <= 0:
            return []
        pager = self.client.receive_messages(
            messages_per_page=min(count, 32),
            max_messages=count,
            visibility_timeout=LEASE_SECONDS,
        )
        return [m async for m in pager]

    async def _renew(self, message: StorageMessage, receipt: list[str]) -> None:
        """Keep the message invisible while a long invocation runs."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 2)
            try:
                updated = await self.client.update_message(
                    message.id, receipt[0], visibility_timeout=LEASE_SECONDS
                )
                receipt[0] = updated.pop_receipt
            except Exception as exc:  # the invocation carries on; delete may fail later
                log.warning("Could not renew lease of message %s: %s", message.id, exc)

    async def _poison(self, message: StorageMessage, receipt: str) -> None:
        poison = await self._clients.ensure(self.connection, self.poison_name)
        await poison.send_message(message.content)  # the original text, still encoded
        with contextlib.suppress(ResourceNotFoundError):
            await self.client.delete_message(message.id, receipt)

    async def process(self, message: StorageMessage) -> Invocation | None:
        """Run the function for one message and settle it: delete, release, or poison."""
        dequeue_count = int(message.dequeue_count or 1)
        receipt = [str(message.pop_receipt)]
        where = f"queue={self.queue_name} id={message.id} dequeue_count={dequeue_count}"
        try:
            body = decode_message(message.content or "", self.options.message_encoding)
        except ValueError as exc:
            log.warning(
                "Message %s on '%s' %s; moving it to '%s'",
                message.id,
                self.queue_name,
                exc,
                self.poison_name,
            )
            await self._poison(message, receipt[0])
            return None
        if dequeue_count > self.options.max_dequeue_count:
            # Delivered again after a crash mid-invocation: it has had its chances.
            log.warning(
                "Message %s on '%s' exceeded maxDequeueCount; moving it to '%s'",
                message.id,
                self.queue_name,
                self.poison_name,
            )
            await self._poison(message, receipt[0])
            return None
        request = FuncQueueMessage(
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        renewer = asyncio.create_task(self._renew(message, receipt))
        try:
            outcome = await invoke(self.spec, request)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        try:
            if outcome.succeeded:
                with contextlib.suppress(ResourceNotFoundError):
                    await self.client.delete_message(message.id, receipt[0])
                disposition = "deleted"
            elif dequeue_count >= self.options.max_dequeue_count:
                await self._poison(message, receipt[0])
                disposition = f"moved to {self.poison_name}"
            else:
                delay = math.ceil(self.options.visibility_timeout.total_seconds())
                await self.client.update_message(message.id, receipt[0], visibility_timeout=delay)
                disposition = f"released, visible again in {delay}s"
        except Exception as exc:  # the lease will lapse and the message come back
            disposition = f"not settled ({type(exc).__name__}: {exc})"
        log_invocation(self.spec, outcome, f"{where} -> {disposition}")
        return outcome

    def _start(self, message: StorageMessage) -> None:
        task = asyncio.create_task(self.process(message))
        self._inflight.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._inflight.discard(t)
            self._wake.set()
            if not t.cancelled() and t.exception() is not None:
                log.error("Processing a message on '%s' failed: %r", self.queue_name, t.exception())

        task.add_done_callback(done)

    async def poll_once(self) -> int:
        """Receive one batch, process it concurrently, wait for all; returns the count."""
        messages = await self._receive(self.options.batch_size)
        for message in messages:
            self._start(message)
        await self.wait_idle()
        return len(messages)

    async def wait_idle(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def pending(self) -> int:
        """Messages still in the queue, visible or not, plus invocations running now."""
        props = await self.client.get_queue_properties()
        return int(props.approximate_message_count or 0) + len(self._inflight)

    async def run(self) -> None:
        """The polling loop: batches, new-batch threshold, and back-off when idle."""
        delay = MIN_POLLING_INTERVAL
        max_delay = max(MIN_POLLING_INTERVAL, self.options.max_polling_interval.total_seconds())
        while not self._stopping:
            self._wake.clear()
            received = 0
            busy = len(self._inflight) > self.options.new_batch_threshold
            if not busy:
                try:
                    messages = await self._receive(self.options.batch_size)
                except Exception as exc:  # storage down: keep trying with back-off
                    log.warning("Polling '%s' failed: %s", self.queue_name, exc)
                    messages = []
                for message in messages:
                    self._start(message)
                received = len(messages)
            if self._stopping:
                break
            if busy or received:
                if received:
                    delay = MIN_POLLING_INTERVAL
                if len(self._inflight) <= self.options.new_batch_threshold:
                    continue
                timeout: float | None = None  # wait for a slot to free up
            else:
                timeout = delay
                delay = min(delay * 2, max_delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            if self._poked:
                self._poked = False
                delay = MIN_POLLING_INTERVAL

    async def stop(self, grace: float) -> None:
        """Stop polling and give running invocations up to `grace` seconds to finish."""
        self._stopping = True
        self._wake.set()
        if self._inflight:
            _, pending = await asyncio.wait(list(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
