"""The local stack behind `make dev` and `make demo`: Azurite, the sandbox and the local
Functions host running function_app.py, started in that order with the app settings that tie
them together. Every reason not to start is one line per problem, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "alex@contoso.com"
ADMIN_ROLE = "Sync.Admin"
# The settings function_app.py's bindings name as %SETTING%: the Functions host reads them from
# app settings, so they get their documented defaults here when the shell does not set them.
BINDING_SETTINGS = ("scheduler_schedule", "sync_queue_name", "intent_queue_name")


class StackError(Exception):
    """The stack cannot start; the message holds the lines to print (one per problem)."""


@dataclass
class Stack:
    state: Path
    port: int
    azurite: Any
    sandbox: Any
    host: Any
    lock: IO[str]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    async def close(self) -> None:
        await _close(self.host, self.sandbox, self.azurite, self.lock)


async def _close(host: Any, sandbox: Any, azurite: Any, lock: IO[str] | None) -> None:
    if host is not None:
        await host.stop()
        from shared.runtime import reset_runtime

        await reset_runtime()
    if sandbox is not None:
        sandbox.close()
    if azurite is not None:
        azurite.stop()
    if lock is not None:
        lock.close()


def binding_defaults() -> dict[str, str]:
    from shared.settings import Settings

    fields = (Settings.model_fields[name] for name in BINDING_SETTINGS)
    return {str(field.alias): str(field.default) for field in fields}


def _check_ports(port: int, sandbox_port: int) -> None:
    """Refuse busy ports before anything starts (the host and the sandbox check again)."""
    from devhost.config import DevHostError
    from devhost.host import bind_port
    from sandbox.startup import StartupError
    from sandbox.startup import bind_port as bind_sandbox_port

    try:
        bind_port("127.0.0.1", port).close()
        if sandbox_port:
            bind_sandbox_port(sandbox_port, "--sandbox-port").close()
    except (DevHostError, StartupError) as error:
        raise StackError(str(error)) from None


async def start_stack(*, port: int, sandbox_port: int, state: Path, what: str,
                      timers: bool = True, queues: bool = True,
                      say: Callable[[str], None] | None = None) -> Stack:
    """Start everything, or clean up what started and raise StackError with its lines."""
    from sandbox.startup import StartupError, hold_lock

    say = say or (lambda text: print(text, flush=True))
    try:  # first of all, so a second run leaves the running one's CA and settings alone
        lock = hold_lock(state / "stack.lock", what)
    except StartupError as error:
        raise StackError(str(error)) from None
    started: dict[str, Any] = {}
    try:
        _check_ports(port, sandbox_port)
        await _start(port, sandbox_port, state, timers, queues, say, started)
        return Stack(state, started["host"].port, started["azurite"], started["sandbox"],
                     started["host"], lock)
    except BaseException:
        await _close(started.get("host"), started.get("sandbox"), started.get("azurite"), lock)
        raise


async def _start(port: int, sandbox_port: int, state: Path, timers: bool, queues: bool,
                 say: Callable[[str], None], started: dict[str, Any]) -> None:
    """Start each part, recording it in `started` as soon as it runs (to be closed)."""
    from devhost.config import DevHostError
    from devhost.host import DevHost
    from shared.settings import SettingsError, load_settings
    from tests.fixtures.azurite import start_azurite
    from tests.fixtures.sandbox import start_sandbox

    say("== starting Azurite (storage emulator)")
    try:
        started["azurite"] = azurite = start_azurite()
        say("== starting the sandbox (Entra ID, Graph, Dataverse emulators over HTTPS)")
        started["sandbox"] = sandbox = start_sandbox(state, port=sandbox_port)
    except RuntimeError as error:
        raise StackError(str(error).splitlines()[0]) from None
    os.environ.update(sandbox.env)
    os.environ["AzureWebJobsStorage"] = azurite.handle.connection_string
    os.environ.setdefault("ADMIN_ROLE", ADMIN_ROLE)
    for name, value in binding_defaults().items():
        os.environ.setdefault(name, value)
    try:
        load_settings()
    except SettingsError as error:
        raise StackError(str(error)) from None
    import function_app

    say(f"== starting the local Functions host on http://127.0.0.1:{port}/api")
    host = DevHost(function_app.app, port=port, host_json_path=ROOT / "host.json",
                   timers=timers, queues=queues)
    started["host"] = host
    try:
        await host.start()
    except DevHostError as error:
        raise StackError(str(error)) from None


def stop_on_signals(host: Any) -> None:
    """Ctrl-C or SIGTERM asks the host to stop; the caller then closes the stack."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, host.request_stop)


def try_it_lines(stack: Stack) -> list[str]:
    """Commands to paste into another shell: an admin token from the sandbox, then the API.
    The token is fetched by the command, never printed here."""
    ca = stack.sandbox.ca_path
    sandbox = stack.sandbox.base_url
    return [
        f"TOKEN=$(curl -sS --cacert {ca} -X POST {sandbox}/_sandbox/tokens/user "
        "-H 'content-type: application/json' "
        f"-d '{{\"user\": \"{ADMIN}\", \"roles\": [\"{ADMIN_ROLE}\"]}}' "
        "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"curl -sS -H \"Authorization: Bearer $TOKEN\" {stack.api_url}/admin/mailboxes",
        f"curl -sS --cacert {ca} -X POST {sandbox}/_sandbox/graph/deliver "
        "-H 'content-type: application/json' -d '{\"to\": [\"alex@contoso.com\"], "
        "\"from\": \"ana@fabrikam.com\", \"subject\": \"Hi\", \"body\": \"x\"}'",
    ]
