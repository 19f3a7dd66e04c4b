"""`python -m devhost` as a developer runs it: serves, logs one line per call, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost",
            "--app",
            "tests.devhost.sample_app:app",
            "--local-settings",
            "/nonexistent/local.settings.json",
            *args,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SAMPLE_")}


def test_cli_serves_http_and_stops_gracefully(tmp_path):
    port = free_port()
    process = run_cli(
        "--port",
        str(port),
        "--no-timers",
        "--no-queues",
        "--host-json",
        str(tmp_path / "host.json"),
        env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/admin/mailboxes/abc")
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "devhost did not start listening"
                time.sleep(0.05)
        assert response.json()["route"] == {"mailbox_id": "abc"}
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Executed 'Functions.get_mailbox' (Succeeded, trigger=httpTrigger" in output
    assert f"http://127.0.0.1:{port}/api/admin/mailboxes/{{mailbox_id}}" in output
    assert "Host stopped." in output


def test_cli_reports_a_missing_setting_and_exits_1():
    process = run_cli("--port", str(free_port()), "--no-http", "--no-queues", env=clean_env())
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "SAMPLE_SCHEDULE" in output and "is not defined" in output


def app_settings_scrubbed() -> dict[str, str]:
    """The environment without any app setting of function_app.py (the suite sets some)."""
    from shared.settings import Settings

    names = {field.alias for field in Settings.model_fields.values()}
    return {k: v for k, v in clean_env().items() if k not in names}


def test_function_app_with_four_missing_settings_prints_four_lines_and_no_traceback():
    env = {**app_settings_scrubbed(), "AzureWebJobsStorage": "UseDevelopmentStorage=true",
           "ENTRA_CLIENT_SECRET": "x"}
    process = subprocess.run(
        [sys.executable, "-m", "devhost", "--app", "function_app:app",
         "--local-settings", "/nonexistent/local.settings.json", "--port", str(free_port())],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert process.returncode == 1
    assert "Traceback" not in process.stdout + process.stderr
    assert process.stderr.splitlines() == [
        f"Invalid app setting {name}: Field required"
        for name in ("DATAVERSE_URL", "ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "API_AUDIENCE")
    ]


def test_a_busy_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        process = run_cli("--port", str(port), "--no-timers", "--no-queues", env=clean_env())
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "Traceback" not in output
    assert output.strip() == f"port {port} is in use; choose another with --port"
