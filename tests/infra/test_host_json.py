"""host.json agrees with what the retry and scheduling code assumes (shared/settings.py)."""

from __future__ import annotations

import json
import re

import pytest

from shared.settings import Settings
from tests.infra.bicep import ROOT

HOST_JSON = ROOT / "host.json"
MAX_BATCH_SIZE = 16  # messages one instance takes at once; small, since each job is a mailbox


def _default(field: str):
    return Settings.model_fields[field].default


def timespan_seconds(value: str) -> float:
    """Seconds of a .NET TimeSpan string as host.json writes it: [d.]hh:mm:ss[.fff]."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", value)
    if not match:
        raise ValueError(f"not a bounded [d.]hh:mm:ss timespan: {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@pytest.fixture(scope="module")
def host():
    return json.loads(HOST_JSON.read_text())


@pytest.fixture(scope="module")
def queues(host):
    return host["extensions"]["queues"]


def test_timespan_parser():
    assert timespan_seconds("00:10:00") == 600
    assert timespan_seconds("00:00:30") == 30
    assert timespan_seconds("1.00:00:00") == 86400
    with pytest.raises(ValueError):
        timespan_seconds("-1")


def test_host_is_functions_v4_with_the_extension_bundle(host):
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert "4." in host["extensionBundle"]["version"]


def test_max_dequeue_count_is_the_intent_attempt_limit(queues):
    # after this many deliveries the message goes to the poison queue and the scheduled cycle
    # takes the action over; INTENT_MAX_ATTEMPTS counts the same attempts
    assert queues["maxDequeueCount"] == _default("intent_max_attempts")


def test_function_timeout_is_bounded_and_within_the_lease(host):
    # a mailbox cycle holds the scheduler lease; if a cycle could outlive its lease a second
    # worker could take the mailbox over while the first is still writing
    timeout = timespan_seconds(host["functionTimeout"])
    assert 0 < timeout <= _default("lease_seconds")


def test_function_timeout_outlasts_one_upstream_call_with_its_retries(host):
    timeout = timespan_seconds(host["functionTimeout"])
    one_call = _default("http_timeout_seconds") * _default("retry_max_attempts")
    assert timeout > one_call + _default("retry_max_wait_seconds")


def test_visibility_timeout_is_within_the_first_retry_delay(queues):
    # the host waits visibilityTimeout before a failed message is visible again; the intent
    # retry code assumes the first retry comes no later than INTENT_RETRY_BASE_SECONDS
    visibility = timespan_seconds(queues["visibilityTimeout"])
    assert 0 <= visibility <= _default("intent_retry_base_seconds")


def test_batch_size_is_small(queues):
    batch = queues["batchSize"]
    assert 1 <= batch <= MAX_BATCH_SIZE
    threshold = queues.get("newBatchThreshold", batch // 2)
    assert 0 <= threshold <= batch
