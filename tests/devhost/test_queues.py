"""Queue triggers against a real Azurite: delete on success, retry, poison, output bindings."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import azure.functions as func
import pytest
from azure.storage.queue.aio import QueueClient

from devhost import MissingSettingError
from tests.devhost import sample_app
from tests.devhost.conftest import wait_until


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def send(connection_string: str, queue: str, content: str) -> None:
    async with QueueClient.from_connection_string(connection_string, queue) as client:
        try:
            await client.create_queue()
        except Exception:
            pass
        await client.send_message(content)


async def count(connection_string: str, queue: str) -> int:
    async with QueueClient.from_connection_string(connection_string, queue) as client:
        props = await client.get_queue_properties()
        return props.approximate_message_count


async def peek_all(connection_string: str, queue: str) -> list[str]:
    async with QueueClient.from_connection_string(connection_string, queue) as client:
        return [m.content for m in await client.peek_messages(max_messages=32)]


async def test_message_is_processed_and_deleted(settings, fast_host_json, make_host):
    cs = settings["AzureWebJobsStorage"]
    host = make_host(
        port=0, host_json_path=fast_host_json, environ=settings, http=False, timers=False
    )
    await send(cs, settings["SAMPLE_QUEUE"], encoded("hello queue"))
    processed = await host.drain_queues(timeout=20)
    assert processed >= 1
    (call,) = sample_app.CALLS["on_message"]
    assert call["body"] == b"hello queue"
    assert call["dequeue_count"] == 1
    assert call["id"] and call["pop_receipt"] and call["insertion_time"] is not None
    assert await count(cs, settings["SAMPLE_QUEUE"]) == 0
    # The queue output binding wrote a base64 message that the second function consumed.
    assert sample_app.CALLS["on_output"] == [{"body": json.dumps({"seen": "hello queue"}).encode()}]
    assert await count(cs, settings["SAMPLE_OUT_QUEUE"]) == 0


async def test_failing_message_is_retried_then_poisoned(settings, fast_host_json, make_host):
    cs = settings["AzureWebJobsStorage"]
    queue = settings["SAMPLE_FAIL_QUEUE"]
    host = make_host(
        port=0, host_json_path=fast_host_json, environ=settings, http=False, timers=False
    )
    await send(cs, queue, encoded("bad news"))
    await host.drain_queues(timeout=20)
    assert [c["dequeue_count"] for c in sample_app.CALLS["always_fails"]] == [1, 2, 3]
    assert await count(cs, queue) == 0
    assert await peek_all(cs, f"{queue}-poison") == [encoded("bad news")]


async def test_failed_message_waits_out_the_visibility_timeout(
    settings, write_host_json, make_host
):
    cs = settings["AzureWebJobsStorage"]
    queue = settings["SAMPLE_FAIL_QUEUE"]
    path = write_host_json(maxDequeueCount=2, visibilityTimeout="00:00:01")
    host = make_host(port=0, host_json_path=path, environ=settings, http=False, timers=False)
    await send(cs, queue, encoded("later"))
    listener = host.queue_listener("always_fails")
    await listener.prepare()
    started = time.monotonic()
    assert await listener.poll_once() == 1
    assert await peek_all(cs, queue) == []  # released but invisible
    assert await count(cs, queue) == 1
    await host.drain_queues(timeout=20)
    assert time.monotonic() - started >= 0.9
    assert [c["dequeue_count"] for c in sample_app.CALLS["always_fails"]] == [1, 2]
    assert await peek_all(cs, f"{queue}-poison") == [encoded("later")]


async def test_invalid_base64_goes_straight_to_poison(settings, fast_host_json, make_host):
    cs = settings["AzureWebJobsStorage"]
    queue = settings["SAMPLE_QUEUE"]
    host = make_host(
        port=0, host_json_path=fast_host_json, environ=settings, http=False, timers=False
    )
    await send(cs, queue, "not base64 !!")
    await host.drain_queues(timeout=20)
    assert sample_app.CALLS["on_message"] == []
    assert await peek_all(cs, f"{queue}-poison") == ["not base64 !!"]


async def test_background_pollers_process_a_batch(settings, fast_host_json, make_host):
    cs = settings["AzureWebJobsStorage"]
    queue = settings["SAMPLE_QUEUE"]
    host = make_host(
        port=0, host_json_path=fast_host_json, environ=settings, http=False, timers=False
    )
    await host.start()
    for i in range(10):
        await send(cs, queue, encoded(f"m{i}"))
    # No drain: the pollers started by start() must pick these up on their own.
    await wait_until(lambda: len(sample_app.CALLS["on_output"]) == 10, within=20)
    assert await host.drain_queues(timeout=20) == 0
    await host.stop()
    bodies = sorted(c["body"] for c in sample_app.CALLS["on_message"])
    assert bodies == sorted(f"m{i}".encode() for i in range(10))
    assert await count(cs, queue) == 0


async def test_missing_queue_setting_is_a_clear_error(settings, make_host):
    del settings["SAMPLE_FAIL_QUEUE"]
    host = make_host(port=0, host_json_path=None, environ=settings, http=False, timers=False)
    with pytest.raises(MissingSettingError) as info:
        await host.start()
    assert "SAMPLE_FAIL_QUEUE" in str(info.value)
    assert "always_fails" in str(info.value)


async def test_missing_connection_is_a_clear_error(settings, make_host):
    del settings["AzureWebJobsStorage"]
    host = make_host(port=0, host_json_path=None, environ=settings, http=False, timers=False)
    with pytest.raises(MissingSettingError, match="AzureWebJobsStorage"):
        await host.drain_queues(timeout=1)


async def test_batch_size_and_threshold_bound_concurrency(settings, write_host_json, make_host):
    """batchSize=2, newBatchThreshold=0: never more than two invocations at once."""
    app = func.FunctionApp()
    state = {"running": 0, "peak": 0, "done": 0}
    release = asyncio.Event()

    @app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="")
    async def slow(msg: func.QueueMessage) -> None:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        await release.wait()
        state["running"] -= 1
        state["done"] += 1

    cs = settings["AzureWebJobsStorage"]
    for i in range(5):
        await send(cs, settings["SAMPLE_QUEUE"], encoded(str(i)))
    path = write_host_json(batchSize=2, newBatchThreshold=0, maxPollingInterval="00:00:01")
    host = make_host(app, port=0, host_json_path=path, environ=settings, http=False)
    await host.start()
    await wait_until(lambda: state["running"] == 2, within=10)
    release.set()
    await wait_until(lambda: state["done"] == 5, within=20)
    await host.stop()
    assert state["peak"] == 2
