"""host.json defaults, TimeSpans, %SETTING% placeholders and connection lookup."""

from datetime import timedelta

import pytest

from devhost.config import (
    DevHostError,
    HostConfig,
    MissingSettingError,
    QueueOptions,
    load_local_settings,
    parse_timespan,
    resolve_connection,
    resolve_placeholders,
)


def test_timespan():
    assert parse_timespan("00:00:30") == timedelta(seconds=30)
    assert parse_timespan("1.02:03:04") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert parse_timespan("00:00:00.5") == timedelta(milliseconds=500)
    with pytest.raises(DevHostError):
        parse_timespan("30s")


def test_queue_defaults_match_the_extension():
    opts = QueueOptions.from_dict({})
    assert (opts.batch_size, opts.new_batch_threshold, opts.max_dequeue_count) == (16, 8, 5)
    assert opts.visibility_timeout == timedelta(0)
    assert opts.max_polling_interval == timedelta(minutes=1)
    assert QueueOptions.from_dict({"batchSize": 4}).new_batch_threshold == 2
    with pytest.raises(DevHostError):
        QueueOptions.from_dict({"batchSize": 64})


def test_host_json(tmp_path):
    assert HostConfig.load(tmp_path / "missing.json").route_prefix == "api"
    path = tmp_path / "host.json"
    path.write_text(
        '{"extensions": {"http": {"routePrefix": ""}, '
        '"queues": {"visibilityTimeout": "00:00:02", "maxDequeueCount": 2}}}'
    )
    config = HostConfig.load(path)
    assert config.route_prefix == ""
    assert config.queues.visibility_timeout == timedelta(seconds=2)
    assert config.queues.max_dequeue_count == 2


def test_placeholders():
    env = {"A": "one", "B": "two"}
    assert resolve_placeholders("%A%-%B%", env, "here") == "one-two"
    assert resolve_placeholders("plain", env, "here") == "plain"
    with pytest.raises(MissingSettingError) as info:
        resolve_placeholders("%MISSING_QUEUE%", env, "Function 'f' queue trigger")
    message = str(info.value)
    assert "MISSING_QUEUE" in message and "Function 'f' queue trigger" in message
    assert info.value.setting == "MISSING_QUEUE"


def test_connection_lookup():
    assert resolve_connection(None, {"AzureWebJobsStorage": "cs"}, "w").connection_string == "cs"
    assert resolve_connection("Store", {"AzureWebJobsStore": "x"}, "w").connection_string == "x"
    uri = resolve_connection("S", {"S__accountName": "acct"}, "w").queue_service_uri
    assert uri == "https://acct.queue.core.windows.net"
    with pytest.raises(MissingSettingError):
        resolve_connection("Nope", {}, "w")


def test_local_settings_do_not_override(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text('{"IsEncrypted": false, "Values": {"A": "file", "B": "file"}}')
    env = {"A": "shell"}
    assert load_local_settings(path, env) == 1
    assert env == {"A": "shell", "B": "file"}
