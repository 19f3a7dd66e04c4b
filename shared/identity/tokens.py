"""Outgoing tokens: app-only (azure-identity) and on-behalf-of a user (msal), as httpx auth flows.

Background sync acts as the application (managed identity in Azure, secret or certificate
elsewhere); add-in calls act as the signed-in user through the on-behalf-of grant, so Graph
and Dataverse apply that user's own permissions. Both flows cache tokens until shortly before
expiry and, on a 401, fetch a fresh token once and resend: a revoked or rolled token should
cost one extra request, not a failed sync.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.exceptions import ServiceRequestError as AzureServiceRequestError

from shared.errors import ErrorKind, UpstreamError
from shared.settings import Settings
from shared.tasks import left_alone

log = logging.getLogger("sss.identity")

# Refresh this long before expiry so a token never expires between check and use.
REFRESH_MARGIN_SECONDS = 300.0


def credential_from_settings(settings: Settings) -> AsyncTokenCredential:
    """The app's own credential: managed identity in Azure, else certificate, else secret.

    `disable_instance_discovery` lets the authority be any host (sovereign clouds, the sandbox).
    """
    from azure.identity.aio import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
    )

    transport: dict[str, Any] = {}
    ca_file = os.environ.get("SSL_CERT_FILE")
    if ca_file:
        # aiohttp freezes its default trust store when first imported; honour the standard
        # variable as it is now (private CAs, proxies that re-sign, the sandbox).
        transport["connection_verify"] = ca_file
    if settings.use_managed_identity:
        if settings.managed_identity_client_id:
            return ManagedIdentityCredential(client_id=settings.managed_identity_client_id,
                                             **transport)
        return ManagedIdentityCredential(**transport)
    common: dict[str, Any] = {"authority": settings.entra_authority_host,
                              "disable_instance_discovery": True, **transport}
    if settings.entra_client_certificate_path:
        return CertificateCredential(settings.entra_tenant_id, settings.entra_client_id,
                                     settings.entra_client_certificate_path, **common)
    if settings.entra_client_secret:
        return ClientSecretCredential(settings.entra_tenant_id, settings.entra_client_id,
                                      settings.entra_client_secret, **common)
    raise UpstreamError("no credential configured", kind=ErrorKind.AUTH, service="entra")


def _claims_challenge(response: httpx.Response) -> str | None:
    """The `claims` of a CAE challenge (`WWW-Authenticate: Bearer ... claims="<b64>"`)."""
    header = response.headers.get("www-authenticate", "")
    marker = 'claims="'
    start = header.find(marker)
    if start < 0:
        return None
    raw = header[start + len(marker):].split('"', 1)[0]
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class AppTokenAuth(httpx.Auth):
    """Bearer tokens for one resource from an azure-identity async credential."""

    def __init__(self, credential: AsyncTokenCredential, scope: str, *,
                 refresh_margin: float = REFRESH_MARGIN_SECONDS) -> None:
        self.credential = credential
        self.scope = scope
        self.refresh_margin = refresh_margin
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock: asyncio.Lock | None = None

    async def get_token(self, *, force: bool = False, claims: str | None = None) -> str:
        """A cached token, refreshed near expiry or when `force`d (after a 401)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not force and self._token and time.time() < self._expires_on - self.refresh_margin:
                return self._token
            try:
                if claims:
                    token = await self.credential.get_token(self.scope, claims=claims)
                else:
                    token = await self.credential.get_token(self.scope)
            except ClientAuthenticationError as error:
                log.warning("app token refused for %s", self.scope)
                raise UpstreamError("app token refused", kind=ErrorKind.AUTH,
                                    service="entra") from error
            except AzureServiceRequestError as error:
                raise UpstreamError("token endpoint unreachable", kind=ErrorKind.TRANSIENT,
                                    service="entra") from error
            self._token, self._expires_on = token.token, float(token.expires_on)
            return self._token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response,
                                                                    None]:
        raise RuntimeError("AppTokenAuth is async only; use httpx.AsyncClient")
        yield request  # pragma: no cover

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request,
                                                                               httpx.Response]:
        sent = await self.get_token()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401:
            claims = _claims_challenge(response)
            if self._token == sent:
                self._token = None
            fresh = await self.get_token(force=claims is not None, claims=claims)
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request


# --- on-behalf-of ------------------------------------------------------------------------------


@dataclass
class _Cached:
    token: str
    expires_on: float


def _client_credential(settings: Settings) -> Any:
    """msal's client credential: the certificate (private key + thumbprint) or the secret."""
    path = settings.entra_client_certificate_path
    if path:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        pem = Path(path).read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(pem, password=None)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        # x5t is a SHA-1 thumbprint by definition (RFC 7515 4.1.7); not used for security.
        thumbprint = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303
        return {"private_key": key_pem, "thumbprint": thumbprint,
                "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode()}
    if settings.entra_client_secret:
        return settings.entra_client_secret
    raise UpstreamError("on-behalf-of needs ENTRA_CLIENT_SECRET or a certificate",
                        kind=ErrorKind.AUTH, service="entra")


# msal errors that mean "this user's assertion or consent is not good": retrying won't help.
_AUTH_ERRORS = {"invalid_grant", "interaction_required", "consent_required", "invalid_client",
                "unauthorized_client", "invalid_scope", "invalid_resource", "invalid_request"}


class OboTokenProvider:
    """One msal ConfidentialClientApplication per app, plus a bounded token cache keyed by
    (hash of the user's assertion, scope): an add-in burst costs one OBO exchange, and the raw
    assertion is never kept as a key."""

    def __init__(self, settings: Settings, *, max_entries: int = 1024,
                 refresh_margin: float = 60.0) -> None:
        self.settings = settings
        self.max_entries = max_entries
        self.refresh_margin = refresh_margin
        self._app: Any = None
        self._cache: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._exchanges: dict[tuple[str, str], asyncio.Future[str]] = {}
        self._lock: asyncio.Lock | None = None

    def _build_app(self) -> Any:
        import msal

        return msal.ConfidentialClientApplication(
            self.settings.entra_client_id,
            client_credential=_client_credential(self.settings),
            authority=f"{self.settings.entra_authority_host}/{self.settings.entra_tenant_id}",
            instance_discovery=False,
        )

    async def _application(self) -> Any:
        if self._app is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._app is None:
                    # msal discovers the authority in its constructor: blocking I/O.
                    try:
                        self._app = await asyncio.to_thread(self._build_app)
                    except UpstreamError:
                        raise
                    except Exception as error:  # msal raises ValueError/requests errors
                        raise UpstreamError("authority unreachable", kind=ErrorKind.TRANSIENT,
                                            service="entra") from error
        return self._app

    async def aclose(self) -> None:
        """Close msal's pooled connections (an idle keep-alive would hold servers open)."""
        app, self._app = self._app, None
        if app is not None:
            await asyncio.to_thread(app.http_client.close)

    def _fresh(self, user_assertion: str, scope: str) -> tuple[tuple[str, str], str | None]:
        """The cache key, and the cached token while it is still usable."""
        key = (hashlib.sha256(user_assertion.encode()).hexdigest(), scope)
        cached = self._cache.get(key)
        usable = cached is not None and time.time() < cached.expires_on - self.refresh_margin
        return key, cached.token if usable and cached is not None else None

    def has_token(self, user_assertion: str, scope: str) -> bool:
        """Whether a usable token for (assertion, scope) is cached: no exchange needed."""
        return self._fresh(user_assertion, scope)[1] is not None

    async def get_token(self, user_assertion: str, scope: str, *, force: bool = False) -> str:
        key, token = self._fresh(user_assertion, scope)
        if token is not None and not force:
            self._cache.move_to_end(key)
            return token
        # One exchange per (assertion, scope) at a time: requests that need the token while it
        # is being fetched (the add-in's parallel reads) wait for that exchange, not start more.
        exchange = self._exchanges.get(key)
        if exchange is None or force or exchange.get_loop() is not asyncio.get_running_loop():
            started = None
            if self._app is not None:  # msal's thread starts now, not a loop turn later
                started = asyncio.get_running_loop().run_in_executor(
                    None, self._app.acquire_token_on_behalf_of, user_assertion, [scope])
                left_alone(started)  # retrieved even if the exchange is cancelled first
            exchange = asyncio.ensure_future(
                self._exchange(key, user_assertion, scope, started))
            self._exchanges[key] = exchange
            exchange.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(exchange)

    def _forget(self, key: tuple[str, str], done: asyncio.Future[str]) -> None:
        if self._exchanges.get(key) is done:
            del self._exchanges[key]
        if not done.cancelled():
            done.exception()  # retrieved here: it is raised to every caller that still waits

    async def _exchange(self, key: tuple[str, str], user_assertion: str, scope: str,
                        started: asyncio.Future[Any] | None = None) -> str:
        if started is None:
            app = await self._application()
            started = asyncio.ensure_future(asyncio.to_thread(
                app.acquire_token_on_behalf_of, user_assertion, [scope]))
        try:
            result = await started
        except Exception as error:  # network failures surface as requests exceptions
            raise UpstreamError("on-behalf-of exchange failed", kind=ErrorKind.TRANSIENT,
                                service="entra", code=type(error).__name__) from error
        if "access_token" not in result:
            code = str(result.get("error", "unknown"))
            kind = ErrorKind.AUTH if code in _AUTH_ERRORS else ErrorKind.TRANSIENT
            log.warning("on-behalf-of refused: %s", code)
            raise UpstreamError("on-behalf-of refused", kind=kind, service="entra", code=code)
        token = str(result["access_token"])
        self._cache[key] = _Cached(token, time.time() + float(result.get("expires_in", 0)))
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return token


_providers: dict[tuple[str, str, str], OboTokenProvider] = {}


def obo_provider(settings: Settings) -> OboTokenProvider:
    """The process-wide provider for these settings (one msal app and cache per app)."""
    key = (settings.entra_authority_host, settings.entra_tenant_id, settings.entra_client_id)
    provider = _providers.get(key)
    if provider is None or provider.settings != settings:
        provider = _providers[key] = OboTokenProvider(settings)
    return provider


async def aclose_obo_providers() -> None:
    """Close every process-wide provider (at worker shutdown)."""
    for provider in list(_providers.values()):
        await provider.aclose()
    _providers.clear()


class OboTokenAuth(httpx.Auth):
    """Bearer tokens for `scope` on behalf of the user whose token (`user_assertion`) called us."""

    def __init__(self, settings: Settings, user_assertion: str, scope: str, *,
                 provider: OboTokenProvider | None = None) -> None:
        self.provider = provider or obo_provider(settings)
        self._assertion = user_assertion
        self.scope = scope

    def __repr__(self) -> str:  # never show the assertion
        return f"OboTokenAuth(scope={self.scope!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response,
                                                                    None]:
        raise RuntimeError("OboTokenAuth is async only; use httpx.AsyncClient")
        yield request  # pragma: no cover

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request,
                                                                               httpx.Response]:
        token = await self.provider.get_token(self._assertion, self.scope)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = await self.provider.get_token(self._assertion, self.scope, force=True)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
