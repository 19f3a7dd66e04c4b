"""host.json, app settings and %SETTING% resolution, with the Functions host's defaults.

Kept separate from the listeners so the rules the real host applies (defaults, TimeSpan
format, placeholder resolution, connection lookup) live in one place and can be unit tested.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any


class DevHostError(Exception):
    """A configuration problem the real Functions host would also refuse to start with."""


class MissingSettingError(DevHostError):
    """A %SETTING% placeholder or connection names an app setting that is not defined."""

    def __init__(self, setting: str, where: str) -> None:
        self.setting = setting
        self.where = where
        super().__init__(
            f"{where}: app setting '{setting}' is not defined. The Functions host resolves "
            f"'%{setting}%' from app settings; set it in the environment or in "
            f"local.settings.json 'Values'."
        )


_PLACEHOLDER = re.compile(r"%([^%\s]+)%")
_TIMESPAN = re.compile(
    r"^(?:(?P<d>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?)?$"
)


def resolve_placeholders(value: str, environ: Mapping[str, str], where: str) -> str:
    """Replace every %NAME% in value with the app setting NAME, as the host's name resolver does.

    A missing setting is an error rather than an empty string: the real host refuses to index
    such a function, and silently listening to the wrong queue is worse than not starting.
    """

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise MissingSettingError(name, where)
        return environ[name]

    return _PLACEHOLDER.sub(sub, value)


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan string ("00:00:30", "1.02:00:00", "00:00:00.500") as host.json uses."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise DevHostError(f"'{text}' is not a TimeSpan (expected [d.]hh:mm[:ss[.fffffff]])")
    frac = match.group("f") or "0"
    return timedelta(
        days=int(match.group("d") or 0),
        hours=int(match.group("h")),
        minutes=int(match.group("m")),
        seconds=int(match.group("s") or 0),
        microseconds=int(frac.ljust(7, "0")) // 10,
    )


def _duration(value: Any, default: timedelta, key: str) -> timedelta:
    """host.json accepts durations as TimeSpan strings; numbers are taken as milliseconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return timedelta(milliseconds=value)
    try:
        return parse_timespan(str(value))
    except DevHostError as exc:
        raise DevHostError(f"host.json {key}: {exc}") from None


@dataclass(frozen=True)
class QueueOptions:
    """extensions.queues, with the defaults of the Storage Queues extension (v5)."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> QueueOptions:
        """Apply the extension's rules: batchSize is capped at 32, threshold defaults to half."""
        batch_size = int(raw.get("batchSize", 16))
        if not 1 <= batch_size <= 32:
            raise DevHostError("host.json extensions.queues.batchSize must be between 1 and 32")
        threshold = int(raw.get("newBatchThreshold", batch_size // 2))
        max_dequeue = int(raw.get("maxDequeueCount", 5))
        if max_dequeue < 1:
            raise DevHostError("host.json extensions.queues.maxDequeueCount must be at least 1")
        encoding = str(raw.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise DevHostError("host.json extensions.queues.messageEncoding must be base64 or none")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=max(0, threshold),
            max_dequeue_count=max_dequeue,
            visibility_timeout=_duration(
                raw.get("visibilityTimeout"), timedelta(0), "extensions.queues.visibilityTimeout"
            ),
            max_polling_interval=_duration(
                raw.get("maxPollingInterval"),
                timedelta(minutes=1),
                "extensions.queues.maxPollingInterval",
            ),
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the dev host honours."""

    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> HostConfig:
        """Read host.json; a missing file means all defaults, as with an empty host.json."""
        if path is None or not Path(path).is_file():
            return cls()
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise DevHostError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> HostConfig:
        extensions = raw.get("extensions") or {}
        http = extensions.get("http") or {}
        prefix = http.get("routePrefix", "api")
        return cls(
            route_prefix=str(prefix if prefix is not None else "").strip("/"),
            queues=QueueOptions.from_dict(extensions.get("queues") or {}),
        )


def load_local_settings(path: str | os.PathLike[str], environ: MutableMapping[str, str]) -> int:
    """Copy local.settings.json 'Values' into environ without overriding what is already set.

    That is what Core Tools do, so a developer's shell variables win over the file.
    Returns how many settings were added.
    """
    file = Path(path)
    if not file.is_file():
        return 0
    try:
        raw = json.loads(file.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DevHostError(f"{file} is not valid JSON: {exc}") from None
    added = 0
    for key, value in (raw.get("Values") or {}).items():
        if key not in environ and value is not None:
            environ[key] = str(value)
            added += 1
    return added


@dataclass(frozen=True)
class StorageConnection:
    """How to reach a storage account: a connection string, or a queue endpoint plus identity."""

    connection_string: str | None = None
    queue_service_uri: str | None = None


def resolve_connection(
    name: str | None, environ: Mapping[str, str], where: str
) -> StorageConnection:
    """Find the storage connection a binding names, in the order the host looks for it.

    `name` (default AzureWebJobsStorage) as a connection string, then the legacy
    `AzureWebJobs<name>` form, then identity-based `<name>__queueServiceUri` /
    `<name>__serviceUri` / `<name>__accountName`.
    """
    name = (name or "AzureWebJobsStorage").strip()
    if _PLACEHOLDER.fullmatch(name):
        name = _PLACEHOLDER.fullmatch(name).group(1)  # type: ignore[union-attr]
    for key in (name, f"AzureWebJobs{name}"):
        value = environ.get(key)
        if value:
            return StorageConnection(connection_string=value)
    for key in (f"{name}__queueServiceUri", f"{name}__serviceUri"):
        value = environ.get(key)
        if value:
            return StorageConnection(queue_service_uri=value)
    account = environ.get(f"{name}__accountName")
    if account:
        return StorageConnection(queue_service_uri=f"https://{account}.queue.core.windows.net")
    raise MissingSettingError(name, where)
