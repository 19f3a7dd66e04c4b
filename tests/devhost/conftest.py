"""Fixtures for devhost tests: app settings pointing at the shared Azurite, and a tiny host.json."""

from __future__ import annotations

import asyncio
import json
import time
from uuid import uuid4

import pytest

from tests.devhost import sample_app


@pytest.fixture(autouse=True)
def clear_calls():
    sample_app.CALLS.clear()
    yield
    sample_app.CALLS.clear()


@pytest.fixture
def settings(azurite) -> dict[str, str]:
    """App settings with queue names of this test's own, so tests never share messages."""
    unique = uuid4().hex[:10]
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_SCHEDULE": "0 */5 * * * *",
        "SAMPLE_QUEUE": f"in-{unique}",
        "SAMPLE_OUT_QUEUE": f"out-{unique}",
        "SAMPLE_FAIL_QUEUE": f"fail-{unique}",
    }


async def wait_until(predicate, within: float = 10.0, interval: float = 0.02) -> None:
    """Poll predicate until true or fail at the deadline: a bound, not a guessed sleep."""
    deadline = time.monotonic() + within
    while not predicate():  # noqa: ASYNC110 - bounded polling of state set by other threads
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


@pytest.fixture
async def make_host():
    """Build DevHosts that are always stopped (clients closed) after the test."""
    from devhost import DevHost

    hosts = []

    def make(app=None, **kwargs):
        host = DevHost(app if app is not None else sample_app.app, **kwargs)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        await host.stop()


@pytest.fixture
def write_host_json(tmp_path):
    """Write a host.json into tmp_path and return its path."""

    def write(**queues) -> str:
        path = tmp_path / "host.json"
        path.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
        return str(path)

    return write


@pytest.fixture
def fast_host_json(write_host_json) -> str:
    """Retries without waiting, three deliveries before poison: keeps queue tests fast."""
    return write_host_json(
        maxDequeueCount=3,
        visibilityTimeout="00:00:00",
        maxPollingInterval="00:00:01",
        batchSize=4,
        newBatchThreshold=2,
    )
