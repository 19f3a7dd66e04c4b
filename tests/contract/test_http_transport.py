"""AiohttpTransport against the sandbox over HTTPS: every failure becomes the httpx exception
whose meaning the retry loop relies on (`never_sent` only when nothing reached the server)."""

from __future__ import annotations

import asyncio
import socket
import ssl

import certifi
import httpx
import pytest

from shared.http.retry import never_sent
from shared.http.transport import AiohttpTransport
from tests.fixtures.sandbox import SandboxHandle


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _get(transport: AiohttpTransport, url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, **kwargs) as client:  # type: ignore[arg-type]
        return await client.get(url)


async def test_a_response_arrives_whole(sandbox: SandboxHandle) -> None:
    tenant = sandbox.env["ENTRA_TENANT_ID"]
    response = await _get(AiohttpTransport(),
                          f"{sandbox.base_url}/{tenant}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["issuer"].endswith(f"/{tenant}/v2.0")


async def test_a_refused_connection_was_never_sent() -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        await _get(AiohttpTransport(), f"https://127.0.0.1:{_closed_port()}/")
    assert never_sent(caught.value)


async def test_an_untrusted_certificate_was_never_sent(sandbox: SandboxHandle) -> None:
    public_roots = ssl.create_default_context(cafile=certifi.where())  # not the sandbox's CA
    with pytest.raises(httpx.ConnectError) as caught:
        await _get(AiohttpTransport(ssl_context=public_roots),
                   f"{sandbox.base_url}/_sandbox/health")
    assert never_sent(caught.value)


async def test_a_slow_answer_is_a_read_timeout_that_may_have_been_acted_on(
        fresh_sandbox: SandboxHandle) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "latency", "latency_ms": 2000,
                          "count": 1})
    with pytest.raises(httpx.ReadTimeout) as caught:
        await _get(AiohttpTransport(), f"{fresh_sandbox.env['GRAPH_BASE_URL']}/me",
                   timeout=httpx.Timeout(5.0, read=0.2))
    assert not never_sent(caught.value)


async def test_a_connection_dropped_mid_body_may_have_been_acted_on(
        fresh_sandbox: SandboxHandle) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "drop", "count": 1})
    with pytest.raises(httpx.TransportError) as caught:
        await _get(AiohttpTransport(), f"{fresh_sandbox.env['GRAPH_BASE_URL']}/me")
    assert isinstance(caught.value, httpx.ReadError | httpx.RemoteProtocolError)
    assert not never_sent(caught.value)


def test_one_transport_serves_one_event_loop_after_another(sandbox: SandboxHandle) -> None:
    """The runtime outlives a test's event loop; its transport must not keep a dead pool."""
    transport = AiohttpTransport()
    url = f"{sandbox.base_url}/_sandbox/health"

    async def get() -> int:
        async with httpx.AsyncClient(transport=transport) as client:
            return (await client.get(url)).status_code

    assert asyncio.run(get()) == 200
    assert asyncio.run(get()) == 200
