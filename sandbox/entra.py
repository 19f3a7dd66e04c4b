"""Emulated Entra ID: discovery, JWKS with rotation, and the v2.0 token endpoint.

It speaks the protocol msal and azure-identity expect (client credentials and the
on-behalf-of grant), signs RS256 tokens with one of two published keys, and verifies the tokens
the other emulators receive. Behaviour follows learn.microsoft.com/entra/identity-platform
(v2-oauth2-client-creds-grant-flow, v2-oauth2-on-behalf-of-flow, access-token-claims-reference).
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.world import SandboxUser, World

GRAPH_RESOURCE = "https://graph.microsoft.com"
TOKEN_LIFETIME = 3600
OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Delegated scopes the sandbox grants a user on Graph and Dataverse through on-behalf-of.
GRAPH_DELEGATED = [
    "Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite", "Contacts.ReadWrite", "Tasks.ReadWrite",
    "User.Read",
]
DATAVERSE_DELEGATED = ["user_impersonation"]


class InvalidToken(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Principal:
    kind: str
    app_id: str
    object_id: str
    roles: list[str]
    scopes: list[str]
    tenant_id: str
    user: SandboxUser | None = None
    claims: dict[str, Any] = field(default_factory=dict)


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class SigningKey:
    kid: str
    key: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                "n": _b64(numbers.n), "e": _b64(numbers.e), "alg": "RS256"}


def _new_key() -> SigningKey:
    return SigningKey(
        kid=secrets.token_urlsafe(12),
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


class TokenIssuer:
    """Two published keys; the first signs. Rotation drops the signer and publishes a new one."""

    def __init__(self) -> None:
        self.keys = [_new_key(), _new_key()]
        self.rogue = _new_key()  # never published: for forged-token tests
        # Verified tokens, as a service caches them: (token, audience, issuer) -> (claims, kid).
        self._verified: dict[tuple[str, str, str], tuple[dict[str, Any], str]] = {}

    def rotate(self) -> None:
        self.keys = [self.keys[1], _new_key()]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys]}

    def sign(self, claims: dict[str, Any], *, rogue: bool = False) -> str:
        key = self.rogue if rogue else self.keys[0]
        return jwt.encode(claims, key.key, algorithm="RS256", headers={"kid": key.kid})

    def verify(self, token: str, *, audience: str, issuer: str) -> dict[str, Any]:
        """The token's claims once its signature, audience, issuer and times check out.

        A token verified before answers from memory (its signature, audience and nbf cannot
        have changed) while its key is still published and until it expires, so the emulator
        does not add an RSA check and a JWT parse to every call's latency."""
        cache_key = (token, audience, issuer)
        cached = self._verified.get(cache_key)
        if cached is not None:
            claims, kid = cached
            if any(k.kid == kid for k in self.keys):
                if time.time() >= claims["exp"]:
                    raise InvalidToken("Signature has expired")
                return dict(claims)
            del self._verified[cache_key]  # its key was rotated out: verified (and refused) anew
        claims, kid = self._verify(token, audience=audience, issuer=issuer)
        if len(self._verified) >= 4096:
            self._verified.clear()
        self._verified[cache_key] = (claims, kid)
        return dict(claims)

    def _verify(self, token: str, *, audience: str, issuer: str
                ) -> tuple[dict[str, Any], str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken("malformed token") from error
        if header.get("alg") != "RS256":
            raise InvalidToken("unsupported algorithm")
        key = next((k for k in self.keys if k.kid == header.get("kid")), None)
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            return jwt.decode(
                token, key.key.public_key(), algorithms=["RS256"], audience=audience,
                issuer=issuer, options={"require": ["exp", "nbf", "iss", "aud", "tid"]},
            ), key.kid
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error


def issuer_of(world: World) -> str:
    return f"{world.base_url}/{world.tenant_id}/v2.0"


def mint(
    world: World,
    issuer_obj: TokenIssuer,
    *,
    audience: str,
    app_id: str,
    user: SandboxUser | None = None,
    roles: list[str] | None = None,
    scopes: list[str] | None = None,
    lifetime: int = TOKEN_LIFETIME,
    now: float | None = None,
    overrides: dict[str, Any] | None = None,
    rogue: bool = False,
) -> tuple[str, int]:
    """Sign an access token the way Entra shapes one (v2.0 claims)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": issuer_of(world),
        "aud": audience,
        "tid": world.tenant_id,
        "iat": issued,
        "nbf": issued - 5,
        "exp": issued + lifetime,
        "azp": app_id,
        "appid": app_id,
        "ver": "2.0",
        "uti": secrets.token_urlsafe(16),
    }
    if user is not None:
        claims.update({
            "oid": user.object_id, "sub": user.object_id, "name": user.display_name,
            "preferred_username": user.upn, "upn": user.upn, "idtyp": "user",
            "scp": " ".join(scopes or []),
        })
        if roles:
            claims["roles"] = roles
    else:
        app = world.apps.get(app_id)
        oid = app.object_id if app else app_id
        claims.update({"oid": oid, "sub": oid, "idtyp": "app", "roles": roles or []})
    claims.update(overrides or {})
    claims = {k: v for k, v in claims.items() if v is not None}
    return issuer_obj.sign(claims, rogue=rogue), lifetime


def authenticate(request: Request, audience: str) -> Principal:
    """Verify the bearer token of a call to an emulated service."""
    world: World = request.app.state.world
    issuer_obj: TokenIssuer = request.app.state.issuer
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise InvalidToken("missing bearer token")
    claims = issuer_obj.verify(header[7:].strip(), audience=audience, issuer=issuer_of(world))
    if claims.get("tid") != world.tenant_id:
        raise InvalidToken("wrong tenant")
    if claims.get("idtyp") == "user" or "scp" in claims:
        user = world.user(claims.get("oid", ""))
        if user is None or user.disabled:
            raise InvalidToken("unknown or disabled user")
        return Principal("user", claims.get("azp", ""), user.object_id, claims.get("roles", []),
                         str(claims.get("scp", "")).split(), world.tenant_id, user, claims)
    return Principal("app", claims.get("azp", ""), claims.get("oid", ""),
                     list(claims.get("roles", [])), [], world.tenant_id, None, claims)


# --- HTTP endpoints ---------------------------------------------------------------------------


def _oauth_error(status: int, error: str, code: int, description: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
        status_code=status,
    )


def _tenant_ok(request: Request) -> bool:
    world: World = request.app.state.world
    return request.path_params["tenant"].lower() in (world.tenant_id, "organizations", "common")


async def openid_configuration(request: Request) -> Response:
    world: World = request.app.state.world
    if not _tenant_ok(request):
        return _oauth_error(400, "invalid_tenant", 90002, "Tenant not found.")
    base = f"{world.base_url}/{world.tenant_id}"
    return JSONResponse({
        "issuer": issuer_of(world),
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                  "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    })


async def jwks(request: Request) -> Response:
    return JSONResponse(request.app.state.issuer.jwks())


def _resource_of(scope: str) -> str | None:
    """`https://graph.microsoft.com/.default` -> `https://graph.microsoft.com`."""
    for part in scope.split():
        if part.endswith("/.default"):
            return part[: -len("/.default")]
    return None


def _client(world: World, form: Any) -> Any:
    client_id = str(form.get("client_id", "")).lower()
    app = world.apps.get(client_id)
    if app is None:
        return None, _oauth_error(400, "unauthorized_client", 700016,
                                  f"Application with identifier '{client_id}' was not found.")
    secret = form.get("client_secret")
    if secret is None or not secrets.compare_digest(str(secret), app.client_secret):
        return None, _oauth_error(401, "invalid_client", 7000215,
                                  "Invalid client secret provided.")
    return app, None


async def token(request: Request) -> Response:
    world: World = request.app.state.world
    issuer_obj: TokenIssuer = request.app.state.issuer
    if not _tenant_ok(request):
        return _oauth_error(400, "invalid_request", 90002, "Tenant not found.")
    form = await request.form()
    grant = form.get("grant_type")
    app, error = _client(world, form)
    if error is not None:
        return error
    resource = _resource_of(str(form.get("scope", "")))
    if resource is None:
        return _oauth_error(400, "invalid_scope", 1002012,
                            "The provided value for scope is not valid; use <resource>/.default.")
    if grant == "client_credentials":
        if resource == GRAPH_RESOURCE:
            roles = app.graph_roles
        elif resource == world.api_audience:
            roles = app.api_roles
        elif resource == world.base_url:
            if not app.dataverse_application_user:
                return _oauth_error(400, "invalid_resource", 500011,
                                    "The resource principal was not found in the tenant.")
            roles = []
        else:
            return _oauth_error(400, "invalid_resource", 500011,
                                f"The resource principal named {resource} was not found.")
        access, lifetime = mint(world, issuer_obj, audience=resource, app_id=app.client_id,
                                roles=roles)
        return _token_response(access, lifetime)
    if grant == OBO_GRANT:
        if form.get("requested_token_use") != "on_behalf_of":
            return _oauth_error(400, "invalid_request", 900144,
                                "The request body must contain requested_token_use.")
        if app.client_id != world.api_client_id:
            # OBO must be made by the app the user's token was issued to (its audience).
            return _oauth_error(400, "invalid_grant", 50013,
                                "Assertion audience does not match the client app presenting it.")
        try:
            claims = issuer_obj.verify(str(form.get("assertion", "")),
                                       audience=world.api_audience, issuer=issuer_of(world))
        except InvalidToken as exc:
            return _oauth_error(400, "invalid_grant", 50013, f"Assertion failed: {exc.reason}.")
        user = world.user(claims.get("oid", ""))
        if user is None or user.disabled:
            return _oauth_error(400, "invalid_grant", 50057, "The user account is disabled.")
        if resource == GRAPH_RESOURCE:
            scopes = GRAPH_DELEGATED
        elif resource == world.base_url:
            scopes = DATAVERSE_DELEGATED
        else:
            return _oauth_error(400, "invalid_resource", 500011,
                                f"The resource principal named {resource} was not found.")
        access, lifetime = mint(world, issuer_obj, audience=resource, app_id=app.client_id,
                                user=user, scopes=scopes)
        return _token_response(access, lifetime, scope=" ".join(f"{resource}/{s}" for s in scopes))
    return _oauth_error(400, "unsupported_grant_type", 70003,
                        f"The app requested an unsupported grant type '{grant}'.")


def _token_response(access: str, lifetime: int, scope: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"token_type": "Bearer", "expires_in": lifetime,
                            "ext_expires_in": lifetime, "access_token": access}
    if scope:
        body["scope"] = scope
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def instance_discovery(request: Request) -> Response:
    """msal may ask even with validation off; answer for the sandbox host only."""
    world: World = request.app.state.world
    host = world.base_url.split("://", 1)[1]
    return JSONResponse({
        "tenant_discovery_endpoint":
            f"{world.base_url}/{world.tenant_id}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    })


def routes() -> list[Route]:
    return [
        Route("/common/discovery/instance", instance_discovery),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", jwks),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ]
