"""Token acquisition failures map to the error taxonomy; 401 refresh happens once, not forever.

Fakes stand in for azure-identity and msal (pure logic); the real ones run in
tests/contract/test_identity.py against the sandbox's Entra.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.errors import ErrorKind, UpstreamError
from shared.identity import AppTokenAuth, OboTokenProvider
from shared.settings import load_settings


class FakeCredential:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        if self.fail:
            raise ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")
        return AccessToken(f"token-{self.calls}", int(time.time()) + 3600)

    async def close(self) -> None:
        pass


def settings() -> Any:
    return load_settings({
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "DATAVERSE_URL": "https://org.test", "ENTRA_TENANT_ID": "t", "ENTRA_CLIENT_ID": "c",
        "ENTRA_CLIENT_SECRET": "s", "API_AUDIENCE": "api://x",
    })


async def test_app_token_cached_and_refreshed_once_on_401() -> None:
    credential = FakeCredential()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401 if len(seen) in (2, 4, 5) else 200)

    auth = AppTokenAuth(credential, "https://graph.microsoft.com/.default")  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        assert (await client.get("https://graph.test/a")).status_code == 200
        assert (await client.get("https://graph.test/b")).status_code == 200  # 401, then ok
        assert (await client.get("https://graph.test/c")).status_code == 401  # twice: give up
    assert len(seen) == 5
    assert credential.calls == 3  # first, and once per 401 answer


async def test_refused_app_credential_is_auth() -> None:
    auth = AppTokenAuth(FakeCredential(fail=True), "scope")  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)),
                                 auth=auth) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.get("https://graph.test/")
    assert caught.value.kind is ErrorKind.AUTH


class FakeMsal:
    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.calls = 0

    def acquire_token_on_behalf_of(self, assertion: str, scopes: list[str]) -> dict[str, Any]:
        self.calls += 1
        return self.result


@pytest.mark.parametrize(("error", "kind"), [
    ("invalid_grant", ErrorKind.AUTH),
    ("interaction_required", ErrorKind.AUTH),
    ("temporarily_unavailable", ErrorKind.TRANSIENT),
])
async def test_obo_errors(error: str, kind: ErrorKind) -> None:
    provider = OboTokenProvider(settings())
    provider._app = FakeMsal({"error": error, "error_description": "AADSTS50013: secret"})
    with pytest.raises(UpstreamError) as caught:
        await provider.get_token("user.jwt.assertion", "https://graph.microsoft.com/.default")
    assert caught.value.kind is kind and caught.value.code == error
    assert "AADSTS" not in str(caught.value) and "assertion" not in str(caught.value)


async def test_obo_cache_is_keyed_by_assertion_hash_and_scope() -> None:
    provider = OboTokenProvider(settings())
    fake = FakeMsal({"access_token": "downstream", "expires_in": 3600})
    provider._app = fake
    for _ in range(3):
        assert await provider.get_token("assertion-1", "scope-a") == "downstream"
    await provider.get_token("assertion-1", "scope-b")
    await provider.get_token("assertion-2", "scope-a")
    assert fake.calls == 3
    assert all("assertion" not in key[0] for key in provider._cache)
    await provider.get_token("assertion-1", "scope-a", force=True)
    assert fake.calls == 4
