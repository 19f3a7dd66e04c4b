"""The README's main command (`make demo` runs `python -m tools.demo`) does what it promises:
seeded mailboxes imported, approved, tested and enabled, then syncing mail into the CRM."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_enables_seeded_mailboxes_and_syncs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--once", "--port", str(_free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "3 mailboxes registered" in out
    enabled = re.findall(r"^\s+(\w+ \w+)\s+True\s+True\s+success\s+success\s+success", out,
                         re.MULTILINE)
    assert {"Alex Wilber", "Megan Bowen", "Nestor Wilke"} <= set(enabled)
    activities = int(re.search(r"the CRM now holds (\d+) email activities", out).group(1))
    assert activities >= 1
    assert "Contract draft" in out
