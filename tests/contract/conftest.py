"""Fixtures shared by the client contract tests."""

from __future__ import annotations

import asyncio

import pytest

from shared.settings import Settings, load_settings
from tests.fixtures.sandbox import SandboxHandle


class Sleeps:
    """Records every wait the client asks for, and really waits (short in these tests)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds)


@pytest.fixture
def settings(sandbox: SandboxHandle) -> Settings:
    """App settings pointing at the sandbox (storage is not used by these tests)."""
    return load_settings({**sandbox.env, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
