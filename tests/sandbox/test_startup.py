"""`python -m sandbox` as a developer starts it: one line for a busy port or a state directory
in use (the running sandbox's CA and settings untouched), and quiet client hang-ups."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from sandbox.app import build_app
from sandbox.world import World, read_seed
from tests.fixtures.sandbox import ROOT, start_sandbox


def run_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_a_second_sandbox_on_the_same_state_dir_refuses_and_leaves_the_first_alone(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = start_sandbox(state)
    try:
        ca, settings = (state / "ca.pem").read_bytes(), (state / "settings.env").read_bytes()
        second = run_sandbox("--port", "0", "--state-dir", str(state))
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        assert second.stderr.strip().splitlines() == [
            f"a sandbox already runs in {state} (pid {first.process.pid}); stop it or choose "
            "another directory"]
        assert (state / "ca.pem").read_bytes() == ca
        assert (state / "settings.env").read_bytes() == settings
        first.control.get("/_sandbox/health").raise_for_status()
    finally:
        first.close()


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_sandbox("--port", str(port), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"port {port} is in use; choose another with --port"
    assert not (tmp_path / "state" / "settings.env").exists()


async def test_a_client_hanging_up_mid_request_raises_nothing_to_the_server() -> None:
    """uvicorn prints "Exception in ASGI application" exactly when the app raises; a body
    that ends in a disconnect must end the request without raising."""
    world = World("https://127.0.0.1:1")
    world.load_seed(read_seed(None))
    app = build_app(world)
    sent: list[dict[str, object]] = []
    events = [{"type": "http.request", "body": b'{"user": ', "more_body": True},
              {"type": "http.disconnect"}]

    async def receive() -> dict[str, object]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    for path in ("/_sandbox/tokens/user", "/_sandbox/graph/deliver"):
        events[:] = [{"type": "http.request", "body": b'{"user": ', "more_body": True},
                     {"type": "http.disconnect"}]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "https", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "server": ("127.0.0.1", 1),
                 "client": ("127.0.0.1", 2),
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", b"1000"), (b"host", b"127.0.0.1")]}
        await app(scope, receive, send)
    assert sent == []
