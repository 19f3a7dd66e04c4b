"""DataverseClient against the sandbox's Dataverse emulator over HTTPS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shared.dataverse import DataverseClient, DataverseOperation
from shared.errors import ErrorKind, UpstreamError
from shared.http.retry import RetryPolicy
from shared.identity import AppTokenAuth, credential_from_settings
from shared.settings import Settings
from shared.sync.batching import batch_with_retry
from tests.contract.conftest import Sleeps
from tests.fixtures.sandbox import SandboxHandle

ALEX_OID = "a1a1a1a1-0000-4000-8000-000000000001"
MEGAN_OID = "a1a1a1a1-0000-4000-8000-000000000002"
ALEX_USER = "51a1a1a1-0000-4000-8000-000000000001"
MEGAN_USER = "51a1a1a1-0000-4000-8000-000000000002"
ANA = "c0000000-0000-4000-8000-000000000001"
BOB = "c0000000-0000-4000-8000-000000000002"
CARLA = "c0000000-0000-4000-8000-000000000003"


@pytest.fixture
async def crm(fresh_sandbox: SandboxHandle, settings: Settings, sleeps: Sleeps
              ) -> AsyncIterator[DataverseClient]:
    credential = credential_from_settings(settings)
    retry = RetryPolicy(max_attempts=4, max_total_wait=3.0, base_delay=0.05, max_delay=0.2,
                        sleep=sleeps)
    client = DataverseClient(settings.dataverse_api_url,
                             AppTokenAuth(credential, settings.dataverse_scope), retry=retry)
    await client.whoami()  # token fetched; counts start after this
    client.stats.reset()
    try:
        yield client
    finally:
        await client.aclose()
        await credential.close()


async def test_whoami_as_app_and_as_impersonated_user(crm: DataverseClient) -> None:
    app = await crm.whoami()
    alex = await crm.impersonate(ALEX_OID).whoami()
    assert alex["UserId"].lower() == ALEX_USER
    assert app["UserId"].lower() != ALEX_USER
    assert alex["BusinessUnitId"]
    assert crm.stats.http_requests == 2  # the impersonating view shares client and counters


async def test_crud_with_etags(crm: DataverseClient) -> None:
    contact_id = await crm.create("contacts", {"firstname": "Eve", "lastname": "Stone",
                                               "emailaddress1": "eve@example.org"})
    row = await crm.get("contacts", contact_id, select=["lastname", "emailaddress1"])
    assert row is not None and row["lastname"] == "Stone"
    etag = row["@odata.etag"]
    await crm.update("contacts", contact_id, {"jobtitle": "Buyer"}, etag=etag)
    with pytest.raises(UpstreamError) as caught:  # someone (we) changed it since
        await crm.update("contacts", contact_id, {"jobtitle": "CEO"}, etag=etag)
    assert caught.value.kind is ErrorKind.CONFLICT and caught.value.status == 412
    await crm.delete("contacts", contact_id)
    await crm.delete("contacts", contact_id)  # already gone: still fine
    assert await crm.get("contacts", contact_id) is None


async def test_update_never_creates_and_upsert_only_create(crm: DataverseClient) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(UpstreamError) as caught:
        await crm.update("contacts", missing, {"lastname": "Ghost"})
    assert caught.value.kind is ErrorKind.NOT_FOUND
    await crm.upsert("contacts", missing, {"lastname": "Chosen id"}, only_create=True)
    assert (await crm.get("contacts", missing, select=["lastname"]) or {})["lastname"] == \
        "Chosen id"
    with pytest.raises(UpstreamError) as caught:
        await crm.upsert("contacts", missing, {"lastname": "Again"}, only_create=True)
    assert caught.value.kind is ErrorKind.CONFLICT
    await crm.upsert("contacts", missing, {"lastname": "Again"})
    assert (await crm.get("contacts", missing, select=["lastname"]) or {})["lastname"] == "Again"


async def test_create_return_representation(crm: DataverseClient) -> None:
    row = await crm.create("accounts", {"name": "Tailspin", "emailaddress1": "hi@tailspin.example"},
                           return_representation=True)
    assert row["name"] == "Tailspin" and row["accountid"]


async def test_list_pages(crm: DataverseClient) -> None:
    for n in range(3):
        await crm.create("contacts", {"lastname": f"Paged {n}"})
    crm.stats.reset()
    rows = [r async for r in crm.list("contacts", select=["lastname"], orderby="lastname",
                                      page_size=2)]
    assert len(rows) == 6
    assert crm.stats.http_requests == 3
    top = [r async for r in crm.list("contacts", select=["lastname"], top=2)]
    assert len(top) == 2


async def test_impersonation_sees_only_what_the_user_may_see(crm: DataverseClient) -> None:
    everyone = {r["contactid"] async for r in crm.impersonate(ALEX_OID).list(
        "contacts", select=["contactid"])}
    assert {ANA, BOB, CARLA} <= everyone
    megan = crm.impersonate(MEGAN_OID)
    mine = {r["contactid"] async for r in megan.list("contacts", select=["contactid"])}
    assert mine == {BOB, CARLA}  # her own, and the one shared with her
    with pytest.raises(UpstreamError) as caught:
        await megan.get("contacts", ANA)
    assert caught.value.kind is ErrorKind.FORBIDDEN and caught.value.code == "0x80040220"


async def test_impersonated_create_is_owned_by_the_user(crm: DataverseClient) -> None:
    megan = crm.impersonate(MEGAN_OID)
    contact_id = await megan.create("contacts", {"lastname": "Owned"})
    row = await crm.get("contacts", contact_id, select=["_ownerid_value"])
    assert row is not None and row["_ownerid_value"].lower() == MEGAN_USER


async def test_find_by_addresses(crm: DataverseClient) -> None:
    rows = await crm.find_by_addresses(
        "contacts", ["emailaddress1", "emailaddress2", "emailaddress3"],
        ["ANA@fabrikam.com", "carla@fabrikam.com", "nobody@example.org", "ana@fabrikam.com"],
        select=["contactid", "emailaddress1"])
    assert sorted(r["contactid"] for r in rows) == [ANA, CARLA]
    many = [f"user{n}@example.org" for n in range(90)] + ["bob@northwind.example"]
    crm.stats.reset()
    rows = await crm.find_by_addresses("contacts", ["emailaddress1"], many,
                                       select=["contactid"], filter="statecode eq 0")
    assert [r["contactid"] for r in rows] == [BOB]
    assert crm.stats.http_requests == 3  # 91 addresses in chunks of 40


async def test_batch_change_set_is_all_or_nothing(fresh_sandbox: SandboxHandle,
                                                  crm: DataverseClient) -> None:
    ops = [DataverseOperation.create("contacts", {"lastname": "Batch A"}),
           DataverseOperation.update("contacts", ANA, {"jobtitle": "Director"}),
           DataverseOperation.get(f"contacts({ANA})?$select=jobtitle")]
    results = await crm.batch(ops, atomic=True)
    assert [r.status for r in results] == [204, 204, 200]
    assert results[0].entity_id and results[2].body["jobtitle"] == "Director"
    assert crm.stats.http_requests == 1 and crm.stats.operations == 3

    doomed = [DataverseOperation.create("contacts", {"lastname": "Batch B"}),
              DataverseOperation.update("contacts", str(uuid.uuid4()), {"lastname": "Nobody"})]
    results = await crm.batch(doomed, atomic=True)
    assert all(not r.ok for r in results)
    assert results[1].error is not None and results[1].error.kind is ErrorKind.NOT_FOUND
    names = [r["lastname"] async for r in crm.list("contacts", select=["lastname"],
                                                   filter="lastname eq 'Batch B'")]
    assert names == []  # rolled back


async def test_batch_without_change_set_reports_each(crm: DataverseClient) -> None:
    ops = [DataverseOperation.create("contacts", {"lastname": "Solo 1"}),
           DataverseOperation.delete("contacts", str(uuid.uuid4())),
           DataverseOperation.update("contacts", str(uuid.uuid4()), {"lastname": "x"}),
           DataverseOperation.create("contacts", {"lastname": "Solo 2"})]
    results = await crm.batch(ops)
    assert results[0].ok and results[3].ok
    assert results[2].error is not None and results[2].error.kind is ErrorKind.NOT_FOUND
    created = {r["lastname"] async for r in crm.list("contacts", select=["lastname"],
                                                      filter="startswith(lastname,'Solo')")}
    assert created == {"Solo 1", "Solo 2"}


async def test_batch_as_impersonated_user(crm: DataverseClient) -> None:
    megan = crm.impersonate(MEGAN_OID)
    results = await megan.batch([DataverseOperation.get(f"contacts({ANA})?$select=lastname"),
                                 DataverseOperation.get(f"contacts({BOB})?$select=lastname")])
    assert [r.ok for r in results] == [False, True]
    assert results[0].error is not None and results[0].error.kind is ErrorKind.FORBIDDEN
    assert results[1].body["lastname"] == "Kelly"


async def test_429_is_retried_with_retry_after(fresh_sandbox: SandboxHandle,
                                               crm: DataverseClient, sleeps: Sleeps) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "status", "status": 429,
                          "retry_after": 1, "count": 1},
                         {"service": "dataverse", "kind": "status", "status": 429,
                          "retry_after": 0, "count": 1})
    assert (await crm.whoami())["UserId"]
    assert sleeps.waits == [1.0, 0.0]
    assert crm.stats.http_requests == 3


@pytest.mark.parametrize("status", [500, 501, 502])
async def test_other_5xx_surface_at_once_as_permanent(fresh_sandbox: SandboxHandle,
                                                      crm: DataverseClient, sleeps: Sleeps,
                                                      status: int) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "status", "status": status,
                          "retry_after": None, "count": None})
    fresh_sandbox.control.delete("/_sandbox/counters")
    with pytest.raises(UpstreamError) as caught:
        await crm.get("contacts", ANA)
    assert (caught.value.kind, caught.value.status) == (ErrorKind.PERMANENT, status)
    assert fresh_sandbox.counters()["requests"]["dataverse"] == 1
    assert crm.stats.http_requests == 1 and sleeps.waits == []


@pytest.mark.parametrize("status", [503, 504])
async def test_unavailable_and_gateway_timeout_are_retried(fresh_sandbox: SandboxHandle,
                                                           crm: DataverseClient,
                                                           status: int) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "status", "status": status,
                          "retry_after": 0, "count": 2})
    assert (await crm.get("contacts", ANA, select=["lastname"]) or {})["lastname"] == "Lopez"
    assert crm.stats.http_requests == 3


async def test_batch_with_retry_follows_the_one_resend_rule(fresh_sandbox: SandboxHandle,
                                                            crm: DataverseClient,
                                                            sleeps: Sleeps) -> None:
    # faults keyed by the parts' own CallerObjectId: the outer $batch request is untouched
    alex, megan = {"CallerObjectId": ALEX_OID}, {"CallerObjectId": MEGAN_OID}
    fresh_sandbox.faults({"service": "dataverse", "kind": "status", "status": 504,
                          "retry_after": 0, "count": 2, "user": ALEX_OID},
                         {"service": "dataverse", "kind": "status", "status": 500,
                          "retry_after": None, "count": 1, "user": MEGAN_OID})
    read, create, other = await batch_with_retry(crm, [
        DataverseOperation("GET", f"contacts({ANA})?$select=lastname", headers=alex),
        DataverseOperation("POST", "contacts", {"lastname": "Gateway"}, headers=alex),
        DataverseOperation("GET", f"contacts({BOB})?$select=lastname", headers=megan)])
    assert read.ok and read.body["lastname"] == "Lopez"  # a read is resent after a 504
    # a create may have landed before a gateway timeout: not resent
    assert create.status == 504 and create.error is not None and create.error.transient
    # a 500 is permanent: never resent
    assert other.status == 500 and other.error is not None
    assert other.error.kind is ErrorKind.PERMANENT
    assert crm.stats.http_requests == 2 and crm.stats.operations == 4
    assert len(sleeps.waits) == 1  # one backoff, through the client's retry policy
    assert [r async for r in crm.list("contacts", filter="lastname eq 'Gateway'")] == []


async def test_batch_with_retry_resends_a_throttled_create(fresh_sandbox: SandboxHandle,
                                                           crm: DataverseClient) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "status", "status": 429,
                          "retry_after": 0, "count": 1, "user": ALEX_OID})
    [created] = await batch_with_retry(crm, [DataverseOperation(
        "POST", "contacts", {"lastname": "Throttled once"},
        headers={"CallerObjectId": ALEX_OID})])
    assert created.ok and crm.stats.operations == 2
    rows = [r async for r in crm.list("contacts", filter="lastname eq 'Throttled once'")]
    assert len(rows) == 1


async def test_create_not_resent_after_dropped_connection(fresh_sandbox: SandboxHandle,
                                                          crm: DataverseClient) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "drop", "count": 1})
    with pytest.raises(UpstreamError) as caught:
        await crm.create("contacts", {"lastname": "Maybe"})
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert crm.stats.http_requests == 1
    fresh_sandbox.faults({"service": "dataverse", "kind": "drop", "count": 1})
    await crm.upsert("contacts", str(uuid.uuid4()), {"lastname": "Surely"})  # resent: safe
    assert crm.stats.http_requests == 3


async def test_privilege_and_transient_budget(fresh_sandbox: SandboxHandle,
                                              crm: DataverseClient) -> None:
    fresh_sandbox.faults({"service": "dataverse", "kind": "status", "status": 503,
                          "retry_after": 30, "count": 5})
    with pytest.raises(UpstreamError) as caught:
        await crm.get("contacts", ANA)
    assert caught.value.transient and caught.value.retry_after == 30.0
    assert crm.stats.http_requests == 1
