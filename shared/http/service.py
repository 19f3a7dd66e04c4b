"""ServiceClient: what GraphClient and DataverseClient share, written once.

One httpx.AsyncClient per service (connections and token cache reused), request counting for
the benchmarks, the shared retry loop, the client's one error mapper, JSON decoding and
`@odata.nextLink` paging. Subclasses add only their service's calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar

import httpx

from shared.errors import ErrorKind, UpstreamError
from shared.http.retry import RequestStats, RetryPolicy, send_with_retry, with_operations
from shared.http.transport import AiohttpTransport

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
Hooks = Mapping[str, Sequence[Any]]
ErrorMapper = Callable[[httpx.Response], UpstreamError]


def as_timeout(value: httpx.Timeout | float | None) -> httpx.Timeout:
    """Explicit timeouts always: a number is the total, with connect capped at 10 s."""
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(float(value), connect=min(10.0, float(value)))


class ServiceClient:
    """Base of the upstream clients; `service` names it in errors and logs."""

    service: ClassVar[str] = "upstream"
    default_headers: ClassVar[dict[str, str]] = {"Accept": "application/json"}

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        event_hooks: Hooks | None = None,
        page_size: int = 100,
        share: ServiceClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.retry: RetryPolicy
        self.stats: RequestStats
        self._http: httpx.AsyncClient
        self._log = logging.getLogger(f"sss.{self.service}")
        if share is not None:  # a view over the same connections (e.g. impersonation)
            self.retry, self.stats, self._http = retry or share.retry, share.stats, share._http
            self._owns_http = False
            return
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        hooks = {k: list(v) for k, v in (event_hooks or {}).items()}
        hooks["request"] = [self.stats.on_request, *hooks.get("request", [])]
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/", auth=auth, transport=transport or AiohttpTransport(),
            timeout=as_timeout(timeout), event_hooks=hooks, headers=self.default_headers,
        )
        self._owns_http = True

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections; a view leaves them to the client it shares."""
        if self._owns_http:
            await self._http.aclose()

    # --- for subclasses ---------------------------------------------------------------------

    def map_error(self, response: httpx.Response) -> UpstreamError:
        """The client's one status-to-exception mapper."""
        raise NotImplementedError

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return dict(extra or {})

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        safe: bool | None = None,
        ok: Sequence[int] = (),
        operations: int = 1,
        extensions: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send with the shared retry loop; an error status outside `ok` raises, mapped.
        `extensions` ride on the request to the transport (e.g. a $batch's mailbox slots)."""
        request = self._http.build_request(method, url, params=params, json=json_body,
                                           content=content, headers=self._headers(headers))
        if extensions:
            request.extensions = {**request.extensions, **extensions}
        if operations != 1:
            with_operations(request, operations)
        response = await send_with_retry(self._http, request, policy=self.retry,
                                         error_mapper=self.map_error, service=self.service,
                                         safe=safe)
        if response.status_code >= 400 and response.status_code not in ok:
            error = self.map_error(response)
            self._log.info("%s %s failed: %s", self.service, method, error.summary())
            raise error
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 204 or not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as error:
            raise UpstreamError(f"{self.service} answered with a body that is not JSON",
                                kind=ErrorKind.TRANSIENT, status=response.status_code,
                                service=self.service) from error
        return body if isinstance(body, dict) else {"value": body}

    async def _pages(self, url: str, params: Mapping[str, Any] | None = None, *,
                     headers: Mapping[str, str] | None = None, limit: int | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        """Items of a collection across `@odata.nextLink` pages (the link carries the query)."""
        next_url: str | None = url
        query: Mapping[str, Any] | None = params
        seen = 0
        while next_url:
            body = self._json(await self._send("GET", next_url, params=query, headers=headers))
            for item in body.get("value", []):
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            next_url, query = body.get("@odata.nextLink"), None
