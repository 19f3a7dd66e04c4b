"""`make dev` and `make demo` as a newcomer runs them, and the docs' commands pasted as written
(only the ports and the state directory changed, so tests never take the default ones)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrubbed_env(**extra: str) -> dict[str, str]:
    """No app setting from the test session (the e2e fixtures export some)."""
    from shared.settings import Settings

    names = {field.alias for field in Settings.model_fields.values()} | {
        "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SANDBOX_URL"}
    return {**{k: v for k, v in os.environ.items() if k not in names}, **extra}


def code_blocks(doc: str, heading: str) -> list[str]:
    """The fenced code blocks under one heading of a docs page."""
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)?\n(.*?)```", section, flags=re.S)


class Running:
    """A command whose merged output is collected line by line while it runs."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.05)  # polling the output, bounded by the deadline

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=10)
        return code


def bash(script: str) -> str:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refuses(tcp_port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=1):
            return False
    except OSError:
        return True


def test_make_dev_then_the_documented_curl_flow(tmp_path: Path) -> None:
    """docs/devhost.md's one command starts everything (the scheduler timer included, with no
    SCHEDULER_SCHEDULE set); docs/api.md's token and call work as pasted, with --cacert."""
    assert code_blocks("devhost.md", "Quick start: the host against the sandbox, one command"
                       ) == ["make dev\n"]
    makefile = (ROOT / "Makefile").read_text()
    assert "\t$(PY) -m tools.dev --port $(PORT) --sandbox-port $(SANDBOX_PORT)\n" in makefile
    port, sandbox_port, state = free_port(), free_port(), tmp_path / "state"
    dev = Running([sys.executable, "-m", "tools.dev", "--port", str(port), "--sandbox-port",
                   str(sandbox_port), "--state-dir", str(state)], scrubbed_env())
    try:
        dev.wait_for("== ready")
        assert any("scheduler_tick: timerTrigger" in line for line in dev.lines)
        [curl] = code_blocks("api.md", "Trying it with curl")
        assert " -k " not in curl and "--insecure" not in curl
        script = (curl.replace("https://127.0.0.1:8443", f"https://127.0.0.1:{sandbox_port}")
                  .replace("http://127.0.0.1:7071", f"http://127.0.0.1:{port}")
                  .replace(".sandbox/ca.pem", str(state / "ca.pem")))
        answer = json.loads(bash(script))
        assert answer["items"] == []  # `make dev` enables nothing: the admin call itself works
    finally:
        code = dev.stop()
    assert code == 0, "\n".join(dev.lines)
    assert "Traceback" not in "\n".join(dev.lines)
    assert refuses(port) and refuses(sandbox_port)


def test_demo_prints_the_api_commands_and_cycles_and_a_second_demo_refuses(
        tmp_path: Path) -> None:
    port, sandbox_port, state = free_port(), free_port(), tmp_path / "state"
    demo = Running([sys.executable, "-m", "tools.demo", "--port", str(port), "--sandbox-port",
                    str(sandbox_port), "--state-dir", str(state)], scrubbed_env())
    try:
        demo.wait_for("one line per sync cycle")
        output = "\n".join(demo.lines)
        assert re.search(r"cycle \d\d:\d\d:\d\d Alex Wilber: incoming 1 moved", output), output
        commands = [line.strip() for line in demo.lines
                    if line.strip().startswith(("TOKEN=", "curl "))]
        assert all("-k " not in c and f"--cacert {state / 'ca.pem'}" in c
                   for c in commands if "https://" in c)
        listed = json.loads(bash("\n".join(commands[:2])))
        assert len(listed["items"]) == 3 and all(b["enabled"] for b in listed["items"])
        assert "eyJ" not in output  # the command fetches a token; none is printed

        ca, settings = (state / "ca.pem").read_bytes(), (state / "settings.env").read_bytes()
        second = subprocess.run(
            [sys.executable, "-m", "tools.demo", "--port", str(free_port()), "--sandbox-port",
             str(free_port()), "--state-dir", str(state)],
            cwd=ROOT, env=scrubbed_env(), capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stdout == ""
        assert second.stderr.splitlines() == [
            f"a demo already runs in {state} (pid {demo.process.pid}); stop it or choose "
            "another directory"]
        assert (state / "ca.pem").read_bytes() == ca
        assert (state / "settings.env").read_bytes() == settings
        httpx.get(f"http://127.0.0.1:{port}/api/openapi.json").raise_for_status()
    finally:
        code = demo.stop()
    assert code == 0, "\n".join(demo.lines)
    assert "Traceback" not in "\n".join(demo.lines)


@pytest.mark.parametrize(("setting", "line"), [
    ({"SYNC_INTERVAL_MIN_MINUTES": "20"},
     "Invalid app setting SYNC_INTERVAL_MIN_MINUTES: 20 is above SYNC_INTERVAL_MAX_MINUTES (12)"),
])
def test_demo_with_a_bad_setting_prints_its_line_and_no_traceback(
        tmp_path: Path, setting: dict[str, str], line: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--once", "--port", str(free_port()),
         "--sandbox-port", "0", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, env=scrubbed_env(**setting), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [line]


def test_demo_on_a_busy_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tools.demo", "--port", str(port), "--sandbox-port", "0",
             "--state-dir", str(tmp_path / "state")],
            cwd=ROOT, env=scrubbed_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == (
        "", f"port {port} is in use; choose another with --port\n")
    assert not (tmp_path / "state" / "ca.pem").exists()


def stop_group(process: subprocess.Popen[str]) -> str:
    """Ctrl-C's SIGTERM for the pasted script and its background jobs (the docs' `kill %1 %2`);
    whatever outlives the grace period is killed, so the output pipe always closes."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.communicate(timeout=20)[0]


def test_the_by_hand_steps_of_devhost_md_work_when_pasted(tmp_path: Path) -> None:
    """The documented steps, run as one script; only ports and the state directory change."""
    from tests.fixtures.azurite import ACCOUNT, ACCOUNT_KEY

    [steps] = code_blocks("devhost.md", "By hand")
    blob, queue, table, port = free_port(), free_port(), free_port(), free_port()
    state = tmp_path / "state"
    connection = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
                  f"AccountKey={ACCOUNT_KEY};QueueEndpoint=http://127.0.0.1:{queue}/{ACCOUNT};"
                  f"TableEndpoint=http://127.0.0.1:{table}/{ACCOUNT};"
                  f"BlobEndpoint=http://127.0.0.1:{blob}/{ACCOUNT};")
    changes = {
        "--disableTelemetry &": f"--disableTelemetry --blobPort {blob} "
                                f"--queuePort {queue} --tablePort {table} &",
        ".venv/bin/python": sys.executable,
        "-m sandbox --state-dir .sandbox": f"-m sandbox --port 0 --state-dir {state}",
        ".sandbox/settings.env": f"{state}/settings.env",
        "AzureWebJobsStorage=UseDevelopmentStorage=true": f"AzureWebJobsStorage='{connection}'",
        "-m devhost": f"-m devhost --port {port}",
    }
    script = steps
    for documented, local in changes.items():
        assert documented in script, documented
        script = script.replace(documented, local)
    assert "--skipApiVersionCheck" in steps
    process = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=scrubbed_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/openapi.json").raise_for_status()
                break
            except httpx.TransportError:
                assert process.poll() is None, "the script stopped before the host answered"
                assert time.monotonic() < deadline, "the host did not answer"
                time.sleep(0.1)  # polling the port, bounded by the deadline
    finally:
        output = stop_group(process)
    assert "scheduler_tick: timerTrigger" in output
    assert "Traceback" not in output
