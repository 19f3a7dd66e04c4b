"""Start Azurite and the sandbox for a benchmark, build the app's runtime against them."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fixtures.app import app_environment
from tests.fixtures.azurite import (
    AZURITE_BIN,
    HOST,
    AzuriteHandle,
    _free_ports,
    _wait_until_listening,
)
from tests.fixtures.sandbox import SandboxHandle, start_sandbox

RESULTS = Path(__file__).parent / "results"


@contextmanager
def azurite() -> Iterator[AzuriteHandle]:
    blob, queue, table = _free_ports(3)
    workdir = tempfile.mkdtemp(prefix="bench-azurite-")
    process = subprocess.Popen(
        [str(AZURITE_BIN), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
         "--silent", "--blobHost", HOST, "--blobPort", str(blob), "--queueHost", HOST,
         "--queuePort", str(queue), "--tableHost", HOST, "--tablePort", str(table)],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        _wait_until_listening(process, [blob, queue, table])
        yield AzuriteHandle(blob, queue, table)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def sandbox() -> Iterator[SandboxHandle]:
    state = Path(tempfile.mkdtemp(prefix="bench-sandbox-")) / "state"
    state.mkdir()
    handle = start_sandbox(state)
    os.environ["SSL_CERT_FILE"] = handle.ca_path
    os.environ["REQUESTS_CA_BUNDLE"] = handle.ca_path
    try:
        yield handle
    finally:
        handle.close()


def app_settings(box: SandboxHandle | None, store: AzuriteHandle, **extra: str) -> Any:
    from shared.settings import load_settings

    prefix = "b" + uuid.uuid4().hex[:12]
    if box is not None:
        env = app_environment(box, store.connection_string, prefix)
    else:
        env = {"AzureWebJobsStorage": store.connection_string, "TABLE_PREFIX": prefix,
               "SYNC_QUEUE_NAME": f"{prefix}-sync", "INTENT_QUEUE_NAME": f"{prefix}-intents",
               "DATAVERSE_URL": "https://example.crm.dynamics.com", "ENTRA_TENANT_ID": "t",
               "ENTRA_CLIENT_ID": "c", "ENTRA_CLIENT_SECRET": "s", "API_AUDIENCE": "api://b"}
    env.update(extra)
    return load_settings(env)


def write(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(_fmt(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
