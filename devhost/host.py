"""DevHost: the HTTP server, timers and queue pollers of one FunctionApp, run together."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from .config import DevHostError, HostConfig
from .functions import (
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    SUPPORTED_TRIGGERS,
    TIMER_TRIGGER,
    FunctionSpec,
    Invocation,
    index_functions,
)
from .http import build_http_app, build_router, describe_http
from .queues import OutputSender, QueueClients, QueueListener
from .timers import TimerRunner

log = logging.getLogger("devhost")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: DevHost (or the CLI) decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class DevHost:
    """Runs a v2-model FunctionApp locally: HTTP on uvicorn, timers, and queue pollers.

    `environ` is where app settings (%SETTING% placeholders, storage connections) are read;
    it defaults to os.environ and is never written to. `port=0` picks a free port; read
    `base_url` after `start()`.
    """

    def __init__(
        self,
        app: Any,
        *,
        port: int = 7071,
        host: str = "127.0.0.1",
        host_json_path: str | os.PathLike[str] | None = "host.json",
        environ: Mapping[str, str] | None = None,
        http: bool = True,
        timers: bool = True,
        queues: bool = True,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.port = port
        self.host = host
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.config = HostConfig.load(host_json_path)
        self.enable_http, self.enable_timers, self.enable_queues = http, timers, queues
        self.shutdown_timeout = shutdown_timeout
        self.functions: dict[str, FunctionSpec] = {s.name: s for s in index_functions(app)}
        self._clients = QueueClients()
        self._listeners: dict[str, QueueListener] = {}
        self._timers: dict[str, TimerRunner] = {}
        self._sender = OutputSender(self._clients, self.environ, self.config.queues, self._sent)
        for spec in self.functions.values():
            spec.output_sink = self._sender
            if spec.trigger_type not in SUPPORTED_TRIGGERS:
                log.warning(
                    "Function '%s' has a %s trigger, which devhost does not run",
                    spec.name,
                    spec.trigger_type,
                )
            outputs = spec.output_bindings()
            for binding in spec.bindings:
                if binding is spec.trigger or (
                    binding in outputs and binding.get("type") in ("http", "queue")
                ):
                    continue
                log.warning(
                    "Function '%s': %s binding '%s' is not emulated (gets None)",
                    spec.name,
                    binding.get("type"),
                    binding.get("name"),
                )
        self._router = build_router(self.functions.values(), self.config.route_prefix)
        self._server: _Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._started = False

    # -- lookup -----------------------------------------------------------------------------

    def _functions_of(self, trigger: str) -> list[FunctionSpec]:
        return [s for s in self.functions.values() if s.trigger_type == trigger]

    def _function(self, name: str, trigger: str) -> FunctionSpec:
        spec = self.functions.get(name)
        if spec is None or spec.trigger_type != trigger:
            known = ", ".join(s.name for s in self._functions_of(trigger)) or "none"
            raise KeyError(f"no {trigger} function named '{name}' (known: {known})")
        return spec

    def timer(self, name: str) -> TimerRunner:
        """The runner for a timer function (resolving its schedule on first use)."""
        if name not in self._timers:
            self._timers[name] = TimerRunner(self._function(name, TIMER_TRIGGER), self.environ)
        return self._timers[name]

    def queue_listener(self, name: str) -> QueueListener:
        """The poller for a queue function (resolving its queue and connection on first use)."""
        if name not in self._listeners:
            self._listeners[name] = QueueListener(
                self._function(name, QUEUE_TRIGGER),
                self.environ,
                self.config.queues,
                self._clients,
            )
        return self._listeners[name]

    def _sent(self, queue_name: str) -> None:
        for listener in self._listeners.values():
            if listener.queue_name == queue_name:
                listener.wake()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def asgi_app(self) -> Any:
        """The Starlette app, for in-process tests that do not need a socket."""
        return build_http_app(self._router)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Validate bindings (missing settings fail here), then start every enabled listener."""
        if self._started:
            raise DevHostError("DevHost already started")
        timers = (
            [self.timer(s.name) for s in self._functions_of(TIMER_TRIGGER)]
            if self.enable_timers
            else []
        )
        listeners = (
            [self.queue_listener(s.name) for s in self._functions_of(QUEUE_TRIGGER)]
            if self.enable_queues
            else []
        )
        for listener in listeners:
            await listener.prepare()
            listener.resume()
        self._stop.clear()
        self._started = True
        if self.enable_http and self._functions_of(HTTP_TRIGGER):
            await self._start_http()
        for runner in timers:
            self._tasks.append(asyncio.create_task(runner.run(self._stop), name=runner.spec.name))
        for listener in listeners:
            self._tasks.append(asyncio.create_task(listener.run(), name=listener.spec.name))
        self._announce(timers, listeners)

    async def _start_http(self) -> None:
        sock = bind_port(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_http_app(self._router),
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
        )
        self._server = _Server(config)
        task = asyncio.create_task(self._server.serve(sockets=[sock]), name="uvicorn")
        self._tasks.append(task)
        deadline = time.monotonic() + 10
        while not self._server.started:
            if task.done():
                raise DevHostError(f"HTTP server failed to start on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise DevHostError("HTTP server did not start within 10 s")
            await asyncio.sleep(0.01)

    def _announce(self, timers: list[TimerRunner], listeners: list[QueueListener]) -> None:
        lines = ["Functions:"]
        if self._server is not None:
            lines += [
                "  " + describe_http(s, self.base_url, self.config.route_prefix)
                for s in self._functions_of(HTTP_TRIGGER)
            ]
        lines += [f"  {t.spec.name}: timerTrigger {t.describe()}" for t in timers]
        lines += [
            f"  {q.spec.name}: queueTrigger queue={q.queue_name} poison={q.poison_name}"
            for q in listeners
        ]
        log.info("\n".join(lines))

    async def stop(self) -> None:
        """Stop polling and timers, let running invocations finish, then close the server."""
        self._stop.set()
        await asyncio.gather(
            *(listener.stop(self.shutdown_timeout) for listener in self._listeners.values())
        )
        if self._server is not None:
            self._server.should_exit = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.shutdown_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._server = None
        await self._clients.close()
        self._started = False

    async def wait_stopped(self) -> None:
        """Block until stop() is requested (the CLI's main loop)."""
        await self._stop.wait()

    @property
    def stopping(self) -> bool:
        """True once stop was requested (a signal, or stop())."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Signal-safe: ask the host to stop; the caller then awaits stop()."""
        self._stop.set()

    async def __aenter__(self) -> DevHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- deterministic drivers for tests and demos -----------------------------------------

    async def run_timer_once(self, function_name: str, *, past_due: bool = False) -> Invocation:
        """Fire a timer function now, whether or not timers are running."""
        return await self.timer(function_name).fire(past_due=past_due)

    async def drain_queues(
        self,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for the whole drain, by design
        *,
        interval: float = 0.05,
    ) -> int:
        """Process queue-triggered messages until every trigger queue is empty.

        Works whether or not the background pollers run. Failed messages released with a
        visibility timeout are waited for and retried until they succeed or are poisoned.
        Raises TimeoutError if the queues are not empty by the deadline. Returns how many
        messages this call received itself.
        """
        listeners = [self.queue_listener(s.name) for s in self._functions_of(QUEUE_TRIGGER)]
        for listener in listeners:
            await listener.prepare()
            listener.wake()
        deadline = time.monotonic() + timeout
        processed = 0
        while True:
            received = 0
            for listener in listeners:
                received += await listener.poll_once()
            processed += received
            if received == 0:
                pending = {listener.queue_name: await listener.pending() for listener in listeners}
                if not any(pending.values()):
                    return processed
                if time.monotonic() > deadline:
                    raise TimeoutError(f"queues not drained within {timeout}s: {pending}")
                await asyncio.sleep(interval)
            elif time.monotonic() > deadline:
                raise TimeoutError(f"queues still receiving messages after {timeout}s")


def bind_port(host: str, port: int) -> socket.socket:
    """Bind the HTTP port up front, so a busy port is one line rather than uvicorn's exit."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise DevHostError(f"port {port} is in use; choose another with --port") from None
        raise DevHostError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def default_host_json(app_module_file: str | None) -> Path:
    """host.json next to the app module, else in the working directory."""
    if app_module_file:
        candidate = Path(app_module_file).resolve().parent / "host.json"
        if candidate.is_file():
            return candidate
    return Path("host.json")
