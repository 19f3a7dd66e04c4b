"""The sandbox's Entra ID with the real client libraries, its start-up files, and every fault
kind, driven over real HTTPS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.fixtures.sandbox import SandboxHandle

GRAPH = "https://graph.microsoft.com"
ALEX_OID = "a1a1a1a1-0000-4000-8000-000000000001"
UNPRIVILEGED = ("3b7d9c1e-0000-4000-8000-00000000c002", "sandbox-only-secret-2")


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def _msal(sb: SandboxHandle, client_id: str | None = None, secret: str | None = None) -> Any:
    import msal

    return msal.ConfidentialClientApplication(
        client_id or sb.env["ENTRA_CLIENT_ID"],
        client_credential=secret or sb.env["ENTRA_CLIENT_SECRET"],
        authority=f"{sb.env['ENTRA_AUTHORITY_HOST']}/{sb.env['ENTRA_TENANT_ID']}",
        instance_discovery=False,
    )


def test_start_up_files(sandbox: SandboxHandle) -> None:
    state = Path(sandbox.state_dir)
    assert (state / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    lines = (state / "settings.env").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines}
    assert {"GRAPH_BASE_URL", "DATAVERSE_URL", "ENTRA_AUTHORITY_HOST", "ENTRA_TENANT_ID",
            "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET", "API_AUDIENCE", "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE"} <= names
    assert sandbox.env["GRAPH_BASE_URL"].endswith("/v1.0")
    assert sandbox.env["DATAVERSE_URL"].startswith("https://127.0.0.1:")


def test_msal_client_credentials_and_on_behalf_of(fresh_sandbox: SandboxHandle) -> None:
    sb = fresh_sandbox
    app = _msal(sb)
    result = app.acquire_token_for_client([f"{GRAPH}/.default"])
    assert "access_token" in result, result
    app_claims = claims(result["access_token"])
    assert app_claims["aud"] == GRAPH and "Mail.Send" in app_claims["roles"]
    assert app_claims["tid"] == sb.env["ENTRA_TENANT_ID"]
    assert app_claims["iss"] == f"{sb.base_url}/{sb.env['ENTRA_TENANT_ID']}/v2.0"

    assertion = sb.user_token("alex@contoso.com")
    for resource, scope in ((GRAPH, "Mail.ReadWrite"),
                            (sb.env["DATAVERSE_URL"], "user_impersonation")):
        obo = app.acquire_token_on_behalf_of(assertion, [f"{resource}/.default"])
        assert "access_token" in obo, obo
        user_claims = claims(obo["access_token"])
        assert user_claims["aud"] == resource and user_claims["oid"] == ALEX_OID
        assert scope in user_claims["scp"].split()
        assert "roles" not in user_claims or not user_claims["roles"]


def test_on_behalf_of_only_for_the_app_the_assertion_was_issued_to(
    fresh_sandbox: SandboxHandle
) -> None:
    other = _msal(fresh_sandbox, *UNPRIVILEGED)
    result = other.acquire_token_on_behalf_of(fresh_sandbox.user_token("alex@contoso.com"),
                                              [f"{GRAPH}/.default"])
    assert result.get("error") == "invalid_grant"


def test_azure_identity_client_secret_credential_sync_and_async(
    fresh_sandbox: SandboxHandle
) -> None:
    from azure.identity import ClientSecretCredential
    from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential

    sb = fresh_sandbox
    args = (sb.env["ENTRA_TENANT_ID"], sb.env["ENTRA_CLIENT_ID"], sb.env["ENTRA_CLIENT_SECRET"])
    options = {"authority": sb.env["ENTRA_AUTHORITY_HOST"], "disable_instance_discovery": True}
    token = ClientSecretCredential(*args, **options).get_token(f"{GRAPH}/.default")
    assert claims(token.token)["aud"] == GRAPH and token.expires_on > time.time()

    async def get() -> str:
        async with AsyncClientSecretCredential(
            *args, connection_verify=sb.ca_path, **options  # type: ignore[arg-type]
        ) as credential:
            return (await credential.get_token(f"{sb.env['DATAVERSE_URL']}/.default")).token

    assert claims(asyncio.run(get()))["aud"] == sb.env["DATAVERSE_URL"]


def test_wrong_secret_is_refused_the_entra_way(fresh_sandbox: SandboxHandle) -> None:
    result = _msal(fresh_sandbox, secret="wrong").acquire_token_for_client(
        [f"{GRAPH}/.default"])
    assert result["error"] == "invalid_client"
    assert 7000215 in result["error_codes"]


def test_jwks_has_two_keys_and_rotation_drops_the_signer(fresh_sandbox: SandboxHandle) -> None:
    sb = fresh_sandbox
    tenant = sb.env["ENTRA_TENANT_ID"]
    config = sb.control.get(f"/{tenant}/v2.0/.well-known/openid-configuration").json()
    keys = sb.control.get(config["jwks_uri"]).json()["keys"]
    assert len(keys) == 2 and all(k["kty"] == "RSA" and k["kid"] for k in keys)
    signer = jwt.get_unverified_header(sb.user_token("alex@contoso.com"))["kid"]
    assert signer == keys[0]["kid"]
    rotated = sb.control.post("/_sandbox/keys/rotate").json()["keys"]
    assert signer not in {k["kid"] for k in rotated} and keys[1]["kid"] == rotated[0]["kid"]


def test_a_token_already_accepted_is_refused_once_its_key_is_rotated_out(
        fresh_sandbox: SandboxHandle) -> None:
    """The emulator remembers verified tokens; rotation must still end them at once."""
    sb = fresh_sandbox
    token = sb.app_token(f"{GRAPH}/.default")
    with sb.client(headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get(f"/v1.0/users/{ALEX_OID}/messages?$top=1").status_code == 200
        assert client.get(f"/v1.0/users/{ALEX_OID}/messages?$top=1").status_code == 200
        sb.control.post("/_sandbox/keys/rotate").raise_for_status()  # drops the signer
        refused = client.get(f"/v1.0/users/{ALEX_OID}/messages?$top=1")
    assert refused.status_code == 401


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox import entra

    issuer = entra.TokenIssuer()
    now = int(time.time())
    token = issuer.sign({"iss": "https://issuer", "aud": "api://x", "tid": "t", "nbf": now - 5,
                         "iat": now - 5, "exp": now + 60})
    assert issuer.verify(token, audience="api://x", issuer="https://issuer")["tid"] == "t"
    assert issuer.verify(token, audience="api://x", issuer="https://issuer")["tid"] == "t"
    monkeypatch.setattr(entra.time, "time", lambda: now + 60.0)
    with pytest.raises(entra.InvalidToken, match="expired"):
        issuer.verify(token, audience="api://x", issuer="https://issuer")
    with pytest.raises(entra.InvalidToken):
        issuer.verify(token, audience="api://other", issuer="https://issuer")


# --- faults -----------------------------------------------------------------------------------


@pytest.fixture
def graph(fresh_sandbox: SandboxHandle) -> httpx.Client:
    token = fresh_sandbox.app_token(f"{GRAPH}/.default")
    return fresh_sandbox.client(headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def dataverse(fresh_sandbox: SandboxHandle) -> httpx.Client:
    token = fresh_sandbox.app_token(f"{fresh_sandbox.env['DATAVERSE_URL']}/.default")
    return fresh_sandbox.client(headers={"Authorization": f"Bearer {token}"})


INBOX = "/v1.0/users/alex@contoso.com/mailFolders/inbox"


@pytest.mark.parametrize("status", [429, 500, 501, 502, 503, 504])
def test_status_faults_answer_in_graphs_form_then_clear(
    fresh_sandbox: SandboxHandle, graph: httpx.Client, status: int
) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": status,
                          "retry_after": 3, "count": 1, "user": "alex@contoso.com"})
    first = graph.get(INBOX)
    assert first.status_code == status and first.headers["retry-after"] == "3"
    assert set(first.json()["error"]) >= {"code", "message"}
    assert graph.get(INBOX).status_code == 200  # the rule fired once


def test_faults_are_per_user(fresh_sandbox: SandboxHandle, graph: httpx.Client) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "status", "status": 503, "count": None,
                          "user": "alex@contoso.com"})
    assert graph.get("/v1.0/users/megan@contoso.com/mailFolders/inbox").status_code == 200
    assert graph.get(f"/v1.0/users/{ALEX_OID}/messages?$top=1").status_code == 503


def test_dataverse_service_protection_429(fresh_sandbox: SandboxHandle,
                                          dataverse: httpx.Client) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "status", "status": 429,
                          "retry_after": 5, "count": 1})
    response = dataverse.get("/api/data/v9.2/WhoAmI")
    assert response.status_code == 429 and response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "0x80072322"
    assert dataverse.get("/api/data/v9.2/WhoAmI").status_code == 200


def test_latency_fault_delays_calls(fresh_sandbox: SandboxHandle, graph: httpx.Client) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "latency", "latency_ms": 300})
    started = time.perf_counter()
    assert graph.get(INBOX).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_dropped_connection(fresh_sandbox: SandboxHandle, graph: httpx.Client) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "drop", "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        graph.get(INBOX)
    assert graph.get(INBOX).status_code == 200


def test_requests_per_window_limit(fresh_sandbox: SandboxHandle,
                                   dataverse: httpx.Client) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "rate_limit", "limit": 3,
                          "window_seconds": 300})
    statuses = [dataverse.get("/api/data/v9.2/WhoAmI").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


def test_graph_allows_four_concurrent_requests_per_mailbox(fresh_sandbox: SandboxHandle) -> None:
    sb = fresh_sandbox
    token = sb.app_token(f"{GRAPH}/.default")
    sb.faults({"service": "graph", "kind": "latency", "latency_ms": 400})

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=sb.base_url, verify=sb.ssl_context(),
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            answers = await asyncio.gather(*(client.get(INBOX) for _ in range(6)))
            return sorted(a.status_code for a in answers)

    assert asyncio.run(burst()) == [200, 200, 200, 200, 429, 429]


def _concurrency(sb: SandboxHandle) -> dict[str, Any]:
    return dict(sb.counters()["graph_concurrency"])


def _inbox_batch(n: int, *, chain: bool = False) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        part: dict[str, Any] = {"id": str(i), "method": "GET",
                                "url": "/users/alex@contoso.com/mailFolders/inbox"}
        if chain and i > 1:
            part["dependsOn"] = [str(i - 1)]
        parts.append(part)
    return {"requests": parts}


def test_batch_runs_four_parts_at_once_each_counting_against_the_mailbox(
    fresh_sandbox: SandboxHandle, graph: httpx.Client
) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "latency", "latency_ms": 200,
                          "user": "alex@contoso.com"})
    fresh_sandbox.control.delete("/_sandbox/counters")
    answer = graph.post("/v1.0/$batch", json=_inbox_batch(9))
    assert answer.status_code == 200
    assert [r["status"] for r in answer.json()["responses"]] == [200] * 9
    seen = _concurrency(fresh_sandbox)
    assert seen["max_in_flight"] == {ALEX_OID: 4}  # Graph runs four parts at a time
    assert seen["throttled"] == {}
    assert seen["in_flight"] == {}


def test_dependent_parts_run_one_after_another(fresh_sandbox: SandboxHandle,
                                               graph: httpx.Client) -> None:
    fresh_sandbox.faults({"service": "graph", "kind": "latency", "latency_ms": 50,
                          "user": "alex@contoso.com"})
    fresh_sandbox.control.delete("/_sandbox/counters")
    answer = graph.post("/v1.0/$batch", json=_inbox_batch(5, chain=True))
    assert [r["status"] for r in answer.json()["responses"]] == [200] * 5
    assert _concurrency(fresh_sandbox)["max_in_flight"] == {ALEX_OID: 1}


def test_a_batch_part_over_the_mailbox_limit_is_throttled(fresh_sandbox: SandboxHandle) -> None:
    sb = fresh_sandbox
    token = sb.app_token(f"{GRAPH}/.default")
    sb.faults({"service": "graph", "kind": "latency", "latency_ms": 1500,
               "user": "alex@contoso.com"})

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url=sb.base_url, verify=sb.ssl_context(),
                                     headers={"Authorization": f"Bearer {token}"},
                                     timeout=30) as client:
            single = asyncio.create_task(client.get(INBOX))
            # the single request is at the service before the batch is sent
            while (await client.get("/_sandbox/counters")).json()[
                    "graph_concurrency"]["in_flight"].get(ALEX_OID) != 1:
                pass
            answer = await client.post("/v1.0/$batch", json=_inbox_batch(4))
            assert (await single).status_code == 200
            return answer

    answer = asyncio.run(run())
    statuses = [r["status"] for r in answer.json()["responses"]]
    assert statuses == [200, 200, 200, 429]  # the fourth part is the fifth request at alex
    throttled = answer.json()["responses"][3]
    assert throttled["body"]["error"]["code"] == "ApplicationThrottled"
    assert "MailboxConcurrency" in throttled["body"]["error"]["message"]
    assert int(throttled["headers"]["Retry-After"]) >= 1
    seen = _concurrency(sb)
    assert seen["throttled"] == {ALEX_OID: 1} and seen["max_in_flight"] == {ALEX_OID: 4}


def test_expired_delta_token_answers_410_with_a_restart_location(
    fresh_sandbox: SandboxHandle, graph: httpx.Client
) -> None:
    first = graph.get(f"{INBOX}/messages/delta", params={"$select": "id"})
    link = first.json().get("@odata.deltaLink") or first.json()["@odata.nextLink"]
    fresh_sandbox.faults({"service": "graph", "kind": "expire_delta", "count": 1})
    expired = graph.get(link)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "syncStateNotFound"
    assert "/messages/delta" in expired.headers["location"]
