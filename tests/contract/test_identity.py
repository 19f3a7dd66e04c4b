"""Identity against the sandbox's emulated Entra ID over HTTPS: app-only tokens through
azure-identity, on-behalf-of through msal, and validation of incoming add-in tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from shared.dataverse import DataverseClient
from shared.errors import ErrorKind, UpstreamError
from shared.graph import GraphClient
from shared.http.retry import RetryPolicy
from shared.identity import (
    AppTokenAuth,
    AuthenticationError,
    AuthorizationError,
    OboTokenAuth,
    OboTokenProvider,
    TokenValidator,
    credential_from_settings,
    require_role,
    require_scope,
)
from shared.settings import Settings, load_settings
from tests.fixtures.sandbox import SandboxHandle

ALEX = "alex@contoso.com"
FAST = RetryPolicy(max_attempts=3, max_total_wait=2.0, base_delay=0.01, max_delay=0.05)


def sandbox_settings(sandbox: SandboxHandle, **extra: str) -> Settings:
    return load_settings({**sandbox.env, "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                          **extra})


@pytest.fixture
def settings(sandbox: SandboxHandle) -> Settings:
    return sandbox_settings(sandbox)


@pytest.fixture
async def validator(settings: Settings) -> AsyncIterator[TokenValidator]:
    async with TokenValidator(settings) as instance:
        yield instance


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- outgoing: app-only ----------------------------------------------------------------------


async def test_app_only_token_through_azure_identity(fresh_sandbox: SandboxHandle,
                                                     settings: Settings) -> None:
    credential = credential_from_settings(settings)
    try:
        auth = AppTokenAuth(credential, settings.graph_scope)
        async with GraphClient(settings.graph_base_url, auth, retry=FAST) as graph:
            inbox = await graph.get_mail_folder(ALEX, "inbox")
            await graph.get_mail_folder(ALEX, "inbox")
        assert inbox["displayName"] == "Inbox"
        before = fresh_sandbox.counters()["requests"].get("entra", 0)
        async with DataverseClient(settings.dataverse_api_url,
                                   AppTokenAuth(credential, settings.dataverse_scope),
                                   retry=FAST) as crm:
            who = await crm.whoami()
        assert who["UserId"]
        # one token per resource, then cached (the Graph token was not asked for again)
        assert fresh_sandbox.counters()["requests"].get("entra", 0) - before <= 2
    finally:
        await credential.close()


async def test_app_token_refreshed_once_on_401(fresh_sandbox: SandboxHandle,
                                               settings: Settings) -> None:
    credential = credential_from_settings(settings)
    try:
        auth = AppTokenAuth(credential, settings.graph_scope)
        async with GraphClient(settings.graph_base_url, auth, retry=FAST) as graph:
            await graph.get_mail_folder(ALEX, "inbox")
            fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 401,
                                  "count": 1, "user": ALEX})
            inbox = await graph.get_mail_folder(ALEX, "inbox")
            assert inbox["displayName"] == "Inbox"
            assert graph.stats.http_requests == 3  # ok, 401, resent with a fresh token
    finally:
        await credential.close()


async def test_wrong_secret_is_an_auth_failure(fresh_sandbox: SandboxHandle) -> None:
    settings = sandbox_settings(fresh_sandbox, ENTRA_CLIENT_SECRET="wrong")
    credential = credential_from_settings(settings)
    try:
        auth = AppTokenAuth(credential, settings.graph_scope)
        async with GraphClient(settings.graph_base_url, auth, retry=FAST) as graph:
            with pytest.raises(UpstreamError) as caught:
                await graph.get_mail_folder(ALEX, "inbox")
        assert caught.value.kind is ErrorKind.AUTH
    finally:
        await credential.close()


# --- outgoing: on-behalf-of ------------------------------------------------------------------


async def test_on_behalf_of_graph_and_dataverse(fresh_sandbox: SandboxHandle,
                                                settings: Settings) -> None:
    assertion = fresh_sandbox.user_token(ALEX)
    provider = OboTokenProvider(settings)
    graph_auth = OboTokenAuth(settings, assertion, settings.graph_scope, provider=provider)
    async with GraphClient(settings.graph_base_url, graph_auth, retry=FAST) as graph:
        inbox = await graph.get_mail_folder(ALEX, "inbox")
        assert inbox["displayName"] == "Inbox"
        entra_before = fresh_sandbox.counters()["requests"].get("entra", 0)
        await graph.get_mail_folder(ALEX, "inbox")
        assert fresh_sandbox.counters()["requests"].get("entra", 0) == entra_before  # cached
    crm_auth = OboTokenAuth(settings, assertion, settings.dataverse_scope, provider=provider)
    async with DataverseClient(settings.dataverse_api_url, crm_auth, retry=FAST) as crm:
        who = await crm.whoami()
    await provider.aclose()
    assert who["UserId"] == "51a1a1a1-0000-4000-8000-000000000001"  # alex's systemuser
    assert "assertion" not in repr(crm_auth) and assertion not in repr(crm_auth)


async def test_on_behalf_of_with_a_forged_assertion_is_auth(fresh_sandbox: SandboxHandle,
                                                            settings: Settings) -> None:
    forged = fresh_sandbox.user_token(ALEX, rogue_key=True)
    provider = OboTokenProvider(settings)
    auth = OboTokenAuth(settings, forged, settings.graph_scope, provider=provider)
    async with GraphClient(settings.graph_base_url, auth, retry=FAST) as graph:
        with pytest.raises(UpstreamError) as caught:
            await graph.get_mail_folder(ALEX, "inbox")
    await provider.aclose()
    assert caught.value.kind is ErrorKind.AUTH
    assert caught.value.code == "invalid_grant"
    assert forged not in str(caught.value)


# --- incoming: token validation ---------------------------------------------------------------


async def test_valid_add_in_token(sandbox: SandboxHandle, validator: TokenValidator) -> None:
    token = sandbox.user_token(ALEX)
    caller = await validator.validate(token)
    assert caller.object_id == "a1a1a1a1-0000-4000-8000-000000000001"
    assert caller.tenant_id == sandbox.env["ENTRA_TENANT_ID"]
    assert caller.upn == ALEX
    assert caller.name == "Alex Wilber"
    assert caller.token == token
    assert token not in repr(caller)
    assert require_scope(caller, sandbox.env["API_SCOPE"]) is caller
    with pytest.raises(AuthorizationError):
        require_role(caller, "Sync.Admin")


async def test_roles_and_scopes(sandbox: SandboxHandle, validator: TokenValidator) -> None:
    caller = await validator.validate(sandbox.user_token(ALEX, roles=["Sync.Admin"],
                                                         scopes=["other"]))
    assert require_role(caller, "Sync.Admin") is caller
    with pytest.raises(AuthorizationError) as caught:
        require_scope(caller, "access_as_user")
    assert caught.value.status == 403
    with pytest.raises(AuthenticationError):
        require_scope(None, "access_as_user")


async def test_v2_audience_as_client_id(sandbox: SandboxHandle,
                                         validator: TokenValidator) -> None:
    audience = sandbox.env["API_AUDIENCE"]
    assert audience.startswith("api://")  # the seed uses an Application ID URI
    caller = await validator.validate(sandbox.user_token(ALEX, audience=audience[6:]))
    assert caller.upn == ALEX


@pytest.mark.parametrize(("options", "reason"), [
    ({"rogue_key": True}, "unknown key"),
    ({"expired": True}, "expired"),
    ({"audience": "api://someone-else"}, "not issued for this API"),
    ({"tenant": "00000000-0000-4000-8000-0000000000ff"}, "another tenant"),
    ({"issuer": "https://login.microsoftonline.com/evil/v2.0"}, "issuer"),
])
async def test_bad_tokens_are_refused(sandbox: SandboxHandle, validator: TokenValidator,
                                      options: dict[str, Any], reason: str) -> None:
    token = sandbox.user_token(ALEX, **options)
    with pytest.raises(AuthenticationError) as caught:
        await validator.validate(token)
    assert reason in caught.value.reason
    assert token not in caught.value.reason


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "a.b.c"])
async def test_missing_or_malformed(validator: TokenValidator, token: str | None) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await validator.validate(token)
    assert caught.value.status == 401


async def test_alg_none_and_hmac_are_refused(sandbox: SandboxHandle,
                                             validator: TokenValidator) -> None:
    genuine = sandbox.user_token(ALEX)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    kid = jwt.get_unverified_header(genuine)["kid"]
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}."
    with pytest.raises(AuthenticationError) as caught:
        await validator.validate(unsigned)
    assert "algorithm" in caught.value.reason
    hmac = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": kid})
    with pytest.raises(AuthenticationError):
        await validator.validate(hmac)
    # the genuine header over tampered claims fails the signature
    head, _, signature = genuine.split(".")
    tampered = f"{head}.{b64({**claims, 'oid': 'someone-else'})}.{signature}"
    with pytest.raises(AuthenticationError) as caught:
        await validator.validate(tampered)
    assert "signature" in caught.value.reason


async def test_key_rotation_refetches_once(sandbox: SandboxHandle, settings: Settings) -> None:
    async with TokenValidator(settings) as validator:
        await validator.validate(sandbox.user_token(ALEX))
        assert validator.jwks_fetches == 1
        # two rotations: the new signer was never in the JWKS the validator holds
        sandbox.control.post("/_sandbox/keys/rotate").raise_for_status()
        sandbox.control.post("/_sandbox/keys/rotate").raise_for_status()
        caller = await validator.validate(sandbox.user_token(ALEX))
        assert caller.upn == ALEX
        assert validator.jwks_fetches == 2
        # forged tokens with unknown keys do not make it fetch again (rate limited)
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                await validator.validate(sandbox.user_token(ALEX, rogue_key=True))
        assert validator.jwks_fetches == 2
        await validator.validate(sandbox.user_token(ALEX))
        assert validator.jwks_fetches == 2
