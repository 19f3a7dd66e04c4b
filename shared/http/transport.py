"""AiohttpTransport: httpx's client over aiohttp's connection pool.

Why: on the add-in's track path each upstream request's own CPU is latency, and httpcore's
pool (anyio TLS streams, a readability poll of every pooled connection per request) costs
about twice what aiohttp's connector does per request (`python -m bench.track_latency`).
httpx stays the client: auth flows, event hooks, the retry loop and the error mappers all see
httpx requests and responses; only the connection layer changes.

Failures become the httpx exceptions whose meaning the retry loop relies on: ConnectError and
ConnectTimeout only when the request cannot have reached the server (`never_sent`), so a
create is never resent after a connection dropped under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import yarl

_CHUNK = 64 * 1024


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """aiohttp's failures as httpx's, most specific first."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as error:  # pool wait or connect: nothing sent
        raise httpx.ConnectTimeout(str(error)) from error
    except aiohttp.ClientConnectorError as error:  # refused, DNS, TLS handshake: nothing sent
        raise httpx.ConnectError(str(error)) from error
    except aiohttp.SocketTimeoutError as error:
        raise httpx.ReadTimeout(str(error)) from error
    except (TimeoutError, aiohttp.ServerTimeoutError) as error:
        raise httpx.ReadTimeout(str(error) or "timed out") from error
    except aiohttp.ServerDisconnectedError as error:  # may have been acted on
        raise httpx.RemoteProtocolError(str(error) or "server disconnected") from error
    except aiohttp.InvalidURL as error:
        raise httpx.UnsupportedProtocol(str(error)) from error
    except aiohttp.ClientResponseError as error:  # a malformed response
        raise httpx.RemoteProtocolError(str(error)) from error
    except aiohttp.ClientError as error:  # payload cut short, socket errors mid-exchange
        raise httpx.ReadError(str(error) or type(error).__name__) from error


class _Body(httpx.AsyncByteStream):
    """The response body, read on demand; closing it early closes its connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session per event loop (a session cannot outlive the loop it was made on)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None,
                 max_connections: int = 100, keepalive_expiry: float = 5.0) -> None:
        # httpx's own context: certifi's roots, or SSL_CERT_FILE / SSL_CERT_DIR when set.
        self._ssl = ssl_context or httpx.create_ssl_context(trust_env=True)
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._max_connections,
                                             keepalive_timeout=self._keepalive_expiry)
            # httpx already sets every header and keeps cookies and proxies itself.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._current()
        body = await request.aread()
        timeout = request.extensions.get("timeout", {})
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        with _mapped():
            response = await session.request(
                request.method, yarl.URL(str(request.url), encoded=True), headers=headers,
                data=body or None, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=timeout.get("pool"),
                                              sock_connect=timeout.get("connect"),
                                              sock_read=timeout.get("read")))
        return httpx.Response(
            status_code=response.status, headers=response.raw_headers, stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1")})

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            return  # made on a loop that has ended: its sockets went with it
        await session.close()
