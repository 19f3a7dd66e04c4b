"""Incoming tokens: who is calling our API, proven by Entra's signature.

Every check Entra's guidance asks of a resource API is made here and nowhere else: RS256 only
(never `none` or HMAC, which would let a caller pick the key), the signature against the
tenant's published keys, the exact issuer of the tenant's discovery document, our audience,
our tenant, and the lifetime. Keys rotate: an unknown `kid` triggers one JWKS refetch, rate
limited so forged tokens cannot turn us into a load generator against the authority.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm

from shared.errors import ErrorKind, UpstreamError
from shared.identity.errors import AuthenticationError, AuthorizationError
from shared.settings import Settings

log = logging.getLogger("sss.identity")

ALGORITHMS = ["RS256"]


@dataclass(frozen=True)
class Caller:
    """The verified caller of one API request."""

    object_id: str
    tenant_id: str
    upn: str | None = None
    name: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    token: str = field(default="", repr=False)  # for on-behalf-of; never logged

    @property
    def is_app(self) -> bool:
        """An app-only token (no delegated scopes): no user to act for."""
        return not self.scopes


def require_scope(caller: Caller | None, scope: str) -> Caller:
    """The delegated scope an add-in call needs; 403 without it."""
    if caller is None:
        raise AuthenticationError("missing bearer token")
    if scope not in caller.scopes:
        raise AuthorizationError(f"the token lacks the scope {scope}")
    return caller


def require_role(caller: Caller | None, role: str) -> Caller:
    """The app role an admin call needs; 403 without it."""
    if caller is None:
        raise AuthenticationError("missing bearer token")
    if role not in caller.roles:
        raise AuthorizationError(f"the caller lacks the role {role}")
    return caller


_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _with_app_id(audiences: list[str]) -> list[str]:
    """v2.0 access tokens carry the API's client id as `aud` even when the add-in asked for
    `api://<client id>/...`; accept both spellings of that one app, nothing else."""
    extra = [a[len("api://"):] for a in audiences
             if a.startswith("api://") and _GUID.match(a[len("api://"):])]
    return audiences + [e for e in extra if e not in audiences]


class TokenValidator:
    """Validates bearer tokens sent to our API against the tenant's Entra metadata."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        authority_host: str | None = None,
        tenant_id: str | None = None,
        audiences: Iterable[str] | None = None,
        leeway: float = 60.0,
        metadata_max_age: float = 24 * 3600.0,
        min_refetch_interval: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        host = authority_host or (settings.entra_authority_host if settings else None)
        tenant = tenant_id or (settings.entra_tenant_id if settings else None)
        if audiences is None and settings is not None:
            audiences = [settings.api_audience]
        if not host or not tenant or not audiences:
            raise ValueError("authority host, tenant id and audience are required")
        self.tenant_id = tenant.lower()
        self.audiences = _with_app_id(list(audiences))
        self.discovery_url = f"{host.rstrip('/')}/{tenant}/v2.0/.well-known/openid-configuration"
        self.leeway = leeway
        self.metadata_max_age = metadata_max_age
        self.min_refetch_interval = min_refetch_interval
        self.clock = clock
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._issuer: str | None = None
        self._jwks_uri: str | None = None
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._refetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.jwks_fetches = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> TokenValidator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- metadata ----------------------------------------------------------------------------

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
        except httpx.TransportError as error:
            raise UpstreamError("authority unreachable", kind=ErrorKind.TRANSIENT,
                                service="entra", code=type(error).__name__) from error
        if response.status_code != 200:
            raise UpstreamError("authority metadata unavailable", kind=ErrorKind.TRANSIENT,
                                service="entra", status=response.status_code)
        try:
            body = response.json()
        except ValueError as error:
            raise UpstreamError("authority metadata unreadable", kind=ErrorKind.TRANSIENT,
                                service="entra") from error
        if not isinstance(body, dict):
            raise UpstreamError("authority metadata unreadable", kind=ErrorKind.TRANSIENT,
                                service="entra")
        return body

    async def _refresh(self) -> None:
        config = await self._get_json(self.discovery_url)
        issuer, jwks_uri = config.get("issuer"), config.get("jwks_uri")
        if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
            raise UpstreamError("authority metadata incomplete", kind=ErrorKind.TRANSIENT,
                                service="entra")
        jwks = await self._get_json(jwks_uri)
        keys: dict[str, Any] = {}
        for jwk in jwks.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not jwk.get("kid"):
                continue
            if jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[str(jwk["kid"])] = RSAAlgorithm.from_jwk(json.dumps(jwk))
            except (jwt.PyJWTError, ValueError, KeyError):
                continue
        self._issuer, self._jwks_uri, self._keys = issuer, jwks_uri, keys
        self._fetched_at = self.clock()
        self.jwks_fetches += 1
        log.info("signing keys loaded: %d", len(keys))

    async def _key_for(self, kid: str) -> Any:
        async with self._lock:
            if self.clock() - self._fetched_at > self.metadata_max_age:
                await self._refresh()
            key = self._keys.get(kid)
            if key is None and self.clock() - self._refetched_at >= self.min_refetch_interval:
                # Unknown key: Entra may have rotated. Look once, then not again for a while.
                self._refetched_at = self.clock()
                await self._refresh()
                key = self._keys.get(kid)
            return key

    # --- validation ---------------------------------------------------------------------------

    async def validate(self, token: str | None) -> Caller:
        """The verified caller of `token` (the bearer value, without "Bearer ")."""
        if not token:
            raise AuthenticationError("missing bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("malformed token") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError("unsupported token algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationError("token has no key id")
        key = await self._key_for(kid)
        if key is None:
            raise AuthenticationError("token signed by an unknown key")
        try:
            claims = jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=self.audiences,
                issuer=self._issuer, leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "tid", "oid"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("token not issued for this API") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("token from an unexpected issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("token signature invalid") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthenticationError(f"token lacks the claim {error.claim}") from None
        except jwt.PyJWTError:
            raise AuthenticationError("token invalid") from None
        if str(claims.get("tid", "")).lower() != self.tenant_id:
            raise AuthenticationError("token from another tenant")
        roles = claims.get("roles") or []
        return Caller(
            object_id=str(claims["oid"]),
            tenant_id=str(claims["tid"]),
            upn=claims.get("preferred_username") or claims.get("upn"),
            name=claims.get("name"),
            scopes=frozenset(str(claims.get("scp", "")).split()),
            roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
            token=token,
        )


__all__ = ["Caller", "TokenValidator", "require_role", "require_scope"]
