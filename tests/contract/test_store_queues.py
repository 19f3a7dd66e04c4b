"""Queues round-trip base64 JSON; the Store factory and request counter behave."""

from __future__ import annotations

import base64
import json

import pytest
from azure.storage.queue.aio import QueueClient

from shared.store import StorageClients, Store
from tests.fixtures.azurite import azurite_settings


async def test_sync_job_round_trip_is_base64_json(store, azurite):
    await store.sync_queue.send({"mailbox_id": "m1", "reason": "due"})
    raw = QueueClient.from_connection_string(azurite.connection_string, store.sync_queue.name)
    async with raw:
        messages = [m async for m in raw.receive_messages(max_messages=5)]
    assert len(messages) == 1
    assert json.loads(base64.b64decode(messages[0].content)) == {
        "mailbox_id": "m1", "reason": "due"
    }


async def test_intent_queue_visibility_timeout_hides_the_message(store, azurite):
    await store.intent_queue.send({"intent_id": "i1"}, visibility_timeout=60)
    await store.intent_queue.send({"intent_id": "i2"})
    raw = QueueClient.from_connection_string(azurite.connection_string, store.intent_queue.name)
    async with raw:
        messages = [m async for m in raw.receive_messages(max_messages=5)]
    assert [json.loads(base64.b64decode(m.content)) for m in messages] == [{"intent_id": "i2"}]


async def test_request_count_counts_each_storage_call(store):
    await store.mailboxes.get("warm-up")
    before = store.request_count
    await store.mailboxes.get("a")
    await store.mailboxes.get("b")
    assert store.request_count - before == 2


async def test_table_names_use_the_prefix(azurite):
    settings = azurite_settings(azurite, TABLE_PREFIX="abc")
    clients = StorageClients.from_settings(settings)
    try:
        assert clients.table_name("mailboxes") == "abcmailboxes"
        with pytest.raises(ValueError):
            clients.table_name("bad-name")
    finally:
        await clients.close()


async def test_identity_based_settings_build_clients_without_a_key(azurite):
    settings = azurite_settings(
        azurite, AzureWebJobsStorage="", AzureWebJobsStorage__accountName="acct",
        AzureWebJobsStorage__credential="managedidentity",
        AzureWebJobsStorage__clientId="11111111-1111-1111-1111-111111111111",
    )
    store = Store.from_settings(settings)
    try:
        assert store.clients.tables.url.startswith("https://acct.table.core.windows.net")
        assert store.clients.queues.url.startswith("https://acct.queue.core.windows.net")
        assert type(store.clients._credential).__name__ == "ManagedIdentityCredential"
    finally:
        await store.close()
