"""The Dataverse emulator driven through the running sandbox over real HTTPS.

Every behaviour the sync relies on, as a client sees it: CRUD and ETags, upsert, queries and
paging, party lists, $batch change sets, impersonation with record and field security, WhoAmI,
SendEmail and Dataverse-shaped errors. DV_TEST_INPROCESS=1 runs the same tests in-process
(Starlette TestClient, no TLS), for working on the emulator while the sandbox core is elsewhere.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
API = "/api/data/v9.2"
SEED = json.loads((ROOT / "sandbox" / "seeds" / "demo.json").read_text(encoding="utf-8"))
ALEX = "a1a1a1a1-0000-4000-8000-000000000001"      # organization scope, may read telephone1
MEGAN = "a1a1a1a1-0000-4000-8000-000000000002"     # user scope
NESTOR = "a1a1a1a1-0000-4000-8000-000000000003"    # organization scope, no field access
ALEX_SU = "51a1a1a1-0000-4000-8000-000000000001"
MEGAN_SU = "51a1a1a1-0000-4000-8000-000000000002"
ANA = "c0000000-0000-4000-8000-000000000001"       # owned by alex, telephone1 set
BOB = "c0000000-0000-4000-8000-000000000002"       # owned by megan
CARLA = "c0000000-0000-4000-8000-000000000003"     # owned by nestor, shared with megan
FABRIKAM = "ac000000-0000-4000-8000-000000000001"
UNPRIVILEGED_APP = ("3b7d9c1e-0000-4000-8000-00000000c002", "sandbox-only-secret-2")


class DV:
    """What the tests need from a sandbox: tokens, an API client, the control client, reset."""

    def __init__(self, base_url: str, make_client: Any, control: httpx.Client,
                 app_token: Any, user_token: Any, reset: Any) -> None:
        self.base_url = base_url
        self.make_client = make_client
        self.control = control
        self.app_token = app_token
        self.user_token = user_token
        self.reset = reset

    def api(self, token: str | None = None, **headers: str) -> httpx.Client:
        token = token or self.app_token()
        return self.make_client(headers={"Authorization": f"Bearer {token}", **headers})

    def as_user(self, oid: str) -> httpx.Client:
        """The application user impersonating oid (the background sync's way)."""
        return self.api(CallerObjectId=oid)


def _real(handle: Any) -> DV:
    base = handle.base_url
    return DV(
        base, lambda headers: handle.client(headers=headers), handle.control,
        lambda *a, **k: handle.app_token(f"{base}/.default", *a, **k),
        lambda upn: handle.user_token(upn, audience=base, scopes=["user_impersonation"]),
        handle.reset,
    )


def _inprocess() -> DV:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    from sandbox import dataverse, entra
    from sandbox.control import add_fault, clear_faults
    from sandbox.faults import FaultMiddleware
    from sandbox.world import AppRegistration, SandboxUser, World

    world = World("https://dv.test")

    def load() -> None:
        world._clear()
        world.tenant_id = SEED["tenant"]["id"]
        for raw in SEED["apps"]:
            app_reg = AppRegistration(raw["client_id"], raw["client_secret"],
                                      raw["display_name"], raw["object_id"],
                                      dataverse_application_user=raw["dataverse_application_user"])
            world.apps[app_reg.client_id] = app_reg
        for raw in SEED["users"]:
            user = SandboxUser(raw["object_id"], raw["upn"], raw["display_name"],
                               raw["systemuser_id"], raw["business_unit_id"],
                               crm_read_scope=raw.get("crm_read_scope", "organization"),
                               field_access=set(raw.get("field_access", [])))
            world.users[user.object_id] = user
            world._by_upn[user.upn] = user
        world.crm = dataverse.CrmStore(world)
        world.crm.load_seed(SEED)
        world.faults.clear()

    load()
    app = Starlette(routes=[Mount("/_sandbox", routes=dataverse.control_routes() + [
                                Route("/faults", add_fault, methods=["POST"]),
                                Route("/faults", clear_faults, methods=["DELETE"])]),
                            *dataverse.routes()],
                    middleware=[Middleware(FaultMiddleware, registry_getter=lambda: world)])
    app.state.world = world
    app.state.issuer = entra.TokenIssuer()

    def app_token(client_id: str = SEED["apps"][0]["client_id"], client_secret: str = "") -> str:
        return entra.mint(world, app.state.issuer, audience=world.base_url, app_id=client_id)[0]

    def user_token(upn: str) -> str:
        return entra.mint(world, app.state.issuer, audience=world.base_url,
                          app_id=SEED["api"]["client_id"], user=world.user(upn),
                          scopes=["user_impersonation"])[0]

    def client(headers: dict[str, str]) -> httpx.Client:
        return TestClient(app, base_url="https://dv.test", headers=headers)

    return DV(world.base_url, client, client({}), app_token, user_token, load)


@pytest.fixture(scope="session")
def dv_session(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[DV]:
    if os.environ.get("DV_TEST_INPROCESS"):
        yield _inprocess()
        return
    try:
        yield _real(request.getfixturevalue("sandbox"))
    except pytest.FixtureLookupError:
        from tests.fixtures.sandbox import start_sandbox

        state = tmp_path_factory.mktemp("dataverse") / "state"
        state.mkdir()
        handle = start_sandbox(state)
        try:
            yield _real(handle)
        finally:
            handle.close()


@pytest.fixture
def dv(dv_session: DV) -> Iterator[DV]:
    dv_session.reset()
    yield dv_session
    dv_session.control.delete("/_sandbox/faults")


def _error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def _id_from(response: httpx.Response) -> str:
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def _new_email(client: httpx.Client, **extra: Any) -> str:
    body = {
        "subject": "Quarterly review",
        "messageid": f"<{uuid.uuid4()}@contoso.com>",
        "email_activity_parties": [
            {"participationtypemask": 1,
             "partyid_systemuser@odata.bind": f"/systemusers({ALEX_SU})"},
            {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({ANA})"},
            {"participationtypemask": 3, "addressused": "someone@unknown.example"},
        ],
        **extra,
    }
    response = client.post(f"{API}/emails", json=body)
    assert response.status_code == 204, response.text
    return _id_from(response)


# --- CRUD, ETags, upsert -------------------------------------------------------------------


def test_create_returns_entity_id_and_record_reads_back(dv: DV) -> None:
    api = dv.api()
    created = api.post(f"{API}/contacts", json={"firstname": "Zoe", "lastname": "Park",
                                                "emailaddress1": "zoe@park.example"})
    assert created.status_code == 204
    assert created.headers["OData-EntityId"].startswith(f"{dv.base_url}{API}/contacts(")
    contact_id = _id_from(created)
    row = api.get(f"{API}/contacts({contact_id})").json()
    assert row["fullname"] == "Zoe Park"
    assert row["statecode"] == 0 and row["statuscode"] == 1
    assert row["@odata.etag"].startswith('W/"')
    assert row["createdon"].endswith("Z") and row["modifiedon"]
    assert row["_ownerid_value"] is not None  # the application user


def test_return_representation_gives_201_with_body(dv: DV) -> None:
    response = dv.api(Prefer="return=representation").post(
        f"{API}/accounts?$select=name,accountid", json={"name": "Northwind"})
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Northwind" and body["accountid"]
    assert set(body) == {"@odata.context", "@odata.etag", "name", "accountid"}


def test_update_bumps_etag_and_if_match_guards(dv: DV) -> None:
    api = dv.api()
    before = api.get(f"{API}/contacts({ANA})?$select=jobtitle").json()
    updated = api.patch(f"{API}/contacts({ANA})", json={"jobtitle": "CFO"},
                        headers={"If-Match": before["@odata.etag"]})
    assert updated.status_code == 204
    after = api.get(f"{API}/contacts({ANA})?$select=jobtitle").json()
    assert after["jobtitle"] == "CFO" and after["@odata.etag"] != before["@odata.etag"]
    stale = api.patch(f"{API}/contacts({ANA})", json={"jobtitle": "CEO"},
                      headers={"If-Match": before["@odata.etag"]})
    assert stale.status_code == 412
    assert _error(stale)["code"] == "0x80060882"
    stale_delete = api.delete(f"{API}/contacts({ANA})", headers={"If-Match": before["@odata.etag"]})
    assert stale_delete.status_code == 412


def test_upsert_creates_and_conditional_headers_limit_it(dv: DV) -> None:
    api = dv.api()
    new_id = str(uuid.uuid4())
    prevented = api.patch(f"{API}/contacts({new_id})", json={"lastname": "Nobody"},
                          headers={"If-Match": "*"})
    assert prevented.status_code == 404
    created = api.patch(f"{API}/contacts({new_id})", json={"lastname": "Upserted"},
                        headers={"If-None-Match": "*"})
    assert created.status_code == 204
    assert api.get(f"{API}/contacts({new_id})").json()["lastname"] == "Upserted"
    blocked = api.patch(f"{API}/contacts({new_id})", json={"lastname": "Again"},
                        headers={"If-None-Match": "*"})
    assert blocked.status_code == 412
    assert "already exists" in _error(blocked)["message"]


def test_delete_then_404(dv: DV) -> None:
    api = dv.api()
    assert api.delete(f"{API}/contacts({BOB})").status_code == 204
    missing = api.get(f"{API}/contacts({BOB})")
    assert missing.status_code == 404
    assert _error(missing)["code"] == "0x80040217"
    assert api.delete(f"{API}/contacts({BOB})").status_code == 404


def test_conditional_get_returns_304(dv: DV) -> None:
    api = dv.api()
    etag = api.get(f"{API}/contacts({ANA})").json()["@odata.etag"]
    assert api.get(f"{API}/contacts({ANA})", headers={"If-None-Match": etag}).status_code == 304


# --- validation errors ---------------------------------------------------------------------


def test_unknown_attribute_and_bad_values_are_refused(dv: DV) -> None:
    api = dv.api()
    unknown = api.post(f"{API}/contacts", json={"lastname": "X", "favouritecolour": "blue"})
    assert unknown.status_code == 400 and _error(unknown)["code"] == "0x80060888"
    option = api.post(f"{API}/contacts", json={"lastname": "X", "gendercode": 99})
    assert option.status_code == 400 and _error(option)["code"] == "0x8004431A"
    mismatch = api.post(f"{API}/emails", json={"subject": "x", "statecode": 0, "statuscode": 3})
    assert mismatch.status_code == 400
    too_long = api.post(f"{API}/emails", json={"subject": "x" * 801})
    assert too_long.status_code == 400 and _error(too_long)["code"] == "0x80044331"
    wrong_type = api.post(f"{API}/contacts", json={"lastname": 5})
    assert wrong_type.status_code == 400
    direct_lookup = api.post(f"{API}/contacts", json={"_parentcustomerid_value": FABRIKAM})
    assert direct_lookup.status_code == 400
    select = api.get(f"{API}/contacts?$select=nosuchcolumn")
    assert select.status_code == 400 and "nosuchcolumn" in _error(select)["message"]


def test_statecode_derives_from_statuscode(dv: DV) -> None:
    api = dv.api()
    email_id = _new_email(api, statuscode=4, directioncode=False)
    row = api.get(f"{API}/emails({email_id})?$select=statecode,statuscode").json()
    assert (row["statecode"], row["statuscode"]) == (1, 4)


# --- queries -------------------------------------------------------------------------------


def test_filters(dv: DV) -> None:
    api = dv.api()

    def ids(query: str) -> set[str]:
        response = api.get(f"{API}/contacts", params={"$select": "contactid", "$filter": query})
        assert response.status_code == 200, response.text
        return {row["contactid"] for row in response.json()["value"]}

    assert ids("emailaddress1 eq 'ANA@fabrikam.com'") == {ANA}
    assert ids("endswith(emailaddress1,'@fabrikam.com') and not startswith(firstname,'C')") == {ANA}
    assert ids("contains(fullname,'o') or lastname eq 'Diaz'") == {ANA, BOB, CARLA}
    assert ids("emailaddress2 eq null and (firstname eq 'Bob' or firstname eq 'Carla')") == \
        {BOB, CARLA}
    assert ids(f"_ownerid_value eq {ALEX_SU}") == {ANA}
    assert ids(f"contactid ne {ANA} and statecode eq 0") == {BOB, CARLA}
    assert ids("lastname eq 'O''Neil'") == set()
    assert ids("createdon gt 2000-01-01T00:00:00Z") == {ANA, BOB, CARLA}
    assert ids("Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',"
               "PropertyValues=['ana@fabrikam.com','CARLA@fabrikam.com','x@y.z'])") == {ANA, CARLA}
    quoted_guid = api.get(f"{API}/contacts", params={"$filter": f"_ownerid_value eq '{ALEX_SU}'"})
    assert quoted_guid.status_code == 400 and _error(quoted_guid)["code"] == "0x80060888"
    unknown = api.get(f"{API}/contacts", params={"$filter": "nosuch eq 1"})
    assert unknown.status_code == 400


def test_orderby_top_count(dv: DV) -> None:
    response = dv.api().get(f"{API}/contacts", params={
        "$select": "firstname", "$orderby": "firstname desc", "$top": "2", "$count": "true"})
    body = response.json()
    assert [r["firstname"] for r in body["value"]] == ["Carla", "Bob"]
    assert body["@odata.count"] == 3
    assert "@odata.nextLink" not in body


def test_server_driven_paging(dv: DV) -> None:
    api = dv.api(Prefer="odata.maxpagesize=4")
    for n in range(10):
        api.post(f"{API}/contacts", json={"lastname": f"Paged{n:02d}",
                                          "emailaddress1": f"p{n}@paged.example"})
    url = f"{API}/contacts?$select=lastname&$filter=endswith(emailaddress1,'@paged.example')"
    seen: list[str] = []
    pages = 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=4"
        body = response.json()
        seen += [r["lastname"] for r in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert "$skiptoken=" in url and url.startswith(dv.base_url)
        pages += 1
    assert pages == 3
    assert seen == [f"Paged{n:02d}" for n in range(10)]


def test_lookup_expand_and_annotations(dv: DV) -> None:
    api = dv.api(Prefer='odata.include-annotations="*"')
    email_id = _new_email(api, **{
        "regardingobjectid_account_email@odata.bind": f"/accounts({FABRIKAM})"})
    row = api.get(f"{API}/emails({email_id})", params={
        "$select": "subject,_regardingobjectid_value,statuscode",
        "$expand": "regardingobjectid_account_email($select=name)"}).json()
    assert row["_regardingobjectid_value"] == FABRIKAM
    assert row["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert row["_regardingobjectid_value@OData.Community.Display.V1.FormattedValue"] == "Fabrikam"
    assert row["statuscode@OData.Community.Display.V1.FormattedValue"] == "Draft"
    assert row["regardingobjectid_account_email"]["name"] == "Fabrikam"


# --- activities and parties ----------------------------------------------------------------


def test_deep_insert_parties_and_expand(dv: DV) -> None:
    api = dv.api()
    email_id = _new_email(api)
    row = api.get(f"{API}/emails({email_id})", params={
        "$select": "subject,activitytypecode,directioncode",
        "$expand": "email_activity_parties($select=participationtypemask,addressused,"
                   "_partyid_value)"}).json()
    parties = {p["participationtypemask"]: p for p in row["email_activity_parties"]}
    assert set(parties) == {1, 2, 3}
    assert parties[1]["_partyid_value"] == ALEX_SU
    assert parties[2]["_partyid_value"] == ANA and parties[2]["addressused"] == "ana@fabrikam.com"
    assert parties[3]["_partyid_value"] is None
    assert parties[3]["addressused"] == "someone@unknown.example"
    assert row["activitytypecode"] == "email" and row["directioncode"] is True
    listed = api.get(f"{API}/activityparties", params={
        "$filter": f"_activityid_value eq {email_id} and participationtypemask eq 2"}).json()
    assert [p["_partyid_value"] for p in listed["value"]] == [ANA]
    by_party = api.get(f"{API}/emails", params={
        "$select": "subject",
        "$filter": "email_activity_parties/any(p:p/addressused eq 'someone@unknown.example')"})
    assert [e["activityid"] for e in by_party.json()["value"]] == [email_id]
    pointers = api.get(f"{API}/activitypointers", params={
        "$filter": f"activityid eq {email_id}", "$select": "subject"}).json()["value"]
    assert pointers[0]["activitytypecode"] == "email"


def test_message_id_lookup_over_many_emails(dv: DV) -> None:
    rows = [{"subject": f"bulk {n}", "messageid": f"<bulk-{n}@x>"} for n in range(300)]
    for row in rows:
        dv.control.post("/_sandbox/crm/emails", json=row).raise_for_status()
    response = dv.api().get(f"{API}/emails", params={
        "$select": "subject", "$filter": "messageid eq '<bulk-250@x>'"})
    assert [r["subject"] for r in response.json()["value"]] == ["bulk 250"]


def test_appointment_parties(dv: DV) -> None:
    api = dv.api()
    created = api.post(f"{API}/appointments", json={
        "subject": "Kick-off", "scheduledstart": "2026-12-01T09:00:00Z",
        "scheduledend": "2026-12-01T10:00:00Z",
        "appointment_activity_parties": [
            {"participationtypemask": 7,
             "partyid_systemuser@odata.bind": f"/systemusers({ALEX_SU})"},
            {"participationtypemask": 5, "partyid_contact@odata.bind": f"/contacts({ANA})"}]})
    assert created.status_code == 204, created.text
    row = api.get(f"{API}/appointments({_id_from(created)})",
                  params={"$expand": "appointment_activity_parties"}).json()
    assert sorted(p["participationtypemask"] for p in row["appointment_activity_parties"]) == [5, 7]


def test_send_email_queues_pending_send(dv: DV) -> None:
    api = dv.api()
    email_id = _new_email(api)
    sent = api.post(f"{API}/emails({email_id})/Microsoft.Dynamics.CRM.SendEmail",
                    json={"IssueSend": True})
    assert sent.status_code == 200, sent.text
    assert sent.json()["Subject"].startswith("Quarterly review CRM:")
    row = api.get(f"{API}/emails({email_id})?$select=statecode,statuscode,trackingtoken").json()
    assert (row["statecode"], row["statuscode"]) == (1, 6)
    assert row["trackingtoken"].startswith("CRM:")
    again = api.post(f"{API}/emails({email_id})/Microsoft.Dynamics.CRM.SendEmail",
                     json={"IssueSend": True})
    assert again.status_code == 400
    marked = _new_email(api)
    api.post(f"{API}/emails({marked})/Microsoft.Dynamics.CRM.SendEmail",
             json={"IssueSend": False, "TrackingToken": "CRM:0000042"}).raise_for_status()
    row = api.get(f"{API}/emails({marked})?$select=statuscode,trackingtoken,senton").json()
    assert row["statuscode"] == 3 and row["trackingtoken"] == "CRM:0000042" and row["senton"]


# --- identity, impersonation, security ------------------------------------------------------


def test_whoami_as_app_and_as_impersonated_user(dv: DV) -> None:
    app_user = dv.api().get(f"{API}/WhoAmI").json()
    assert app_user["UserId"] not in (ALEX_SU, MEGAN_SU) and app_user["OrganizationId"]
    megan = dv.as_user(MEGAN).get(f"{API}/WhoAmI").json()
    assert megan["UserId"] == MEGAN_SU
    assert megan["BusinessUnitId"] == "b0000000-0000-4000-8000-000000000001"
    delegated = dv.api(dv.user_token("alex@contoso.com")).get(f"{API}/WhoAmI").json()
    assert delegated["UserId"] == ALEX_SU


def test_authentication_and_application_user_required(dv: DV) -> None:
    anonymous = dv.make_client(headers={})
    assert anonymous.get(f"{API}/contacts").status_code == 401
    bad = dv.make_client(headers={"Authorization": "Bearer not-a-token"})
    assert bad.get(f"{API}/WhoAmI").status_code == 401


def test_impersonation_errors(dv: DV) -> None:
    unknown = dv.as_user(str(uuid.uuid4())).get(f"{API}/WhoAmI")
    assert unknown.status_code == 403
    delegated_other = dv.api(dv.user_token("alex@contoso.com"), CallerObjectId=MEGAN)
    refused = delegated_other.get(f"{API}/WhoAmI")
    assert refused.status_code == 403 and _error(refused)["code"] == "0x8004A110"


def test_record_security_for_user_scope(dv: DV) -> None:
    megan = dv.as_user(MEGAN)
    listed = megan.get(f"{API}/contacts?$select=fullname").json()["value"]
    assert {r["contactid"] for r in listed} == {BOB, CARLA}   # own + shared
    hidden = megan.get(f"{API}/contacts({ANA})")
    assert hidden.status_code == 403 and _error(hidden)["code"] == "0x80040220"
    write = megan.patch(f"{API}/contacts({ANA})", json={"jobtitle": "x"})
    assert write.status_code == 403 and "SecLib::AccessCheckEx" in _error(write)["message"]
    assert megan.delete(f"{API}/contacts({ANA})").status_code == 403
    assert megan.patch(f"{API}/contacts({CARLA})", json={"jobtitle": "Shared"}).status_code == 204
    created = megan.post(f"{API}/contacts", json={"lastname": "Megans"})
    row = dv.api().get(f"{API}/contacts({_id_from(created)})",
                       params={"$select": "_ownerid_value,_createdonbehalfby_value"}).json()
    assert row["_ownerid_value"] == MEGAN_SU
    assert row["_createdonbehalfby_value"] == dv.api().get(f"{API}/WhoAmI").json()["UserId"]
    dv.control.post("/_sandbox/crm/shares", json={"table": "contacts", "id": ANA,
                                                  "users": ["megan@contoso.com"]})
    assert megan.get(f"{API}/contacts({ANA})").status_code == 200


def test_field_security(dv: DV) -> None:
    alex, nestor = dv.as_user(ALEX), dv.as_user(NESTOR)
    assert alex.get(f"{API}/contacts({ANA})?$select=telephone1").json()["telephone1"] == \
        "+1 555 0100"
    assert nestor.get(f"{API}/contacts({ANA})?$select=telephone1").json()["telephone1"] is None
    leak = nestor.get(f"{API}/contacts", params={"$filter": "telephone1 eq '+1 555 0100'"})
    assert leak.json()["value"] == []
    refused = nestor.patch(f"{API}/contacts({ANA})", json={"telephone1": "0"})
    assert refused.status_code == 403 and _error(refused)["code"] == "0x8004F507"
    assert nestor.post(f"{API}/contacts", json={"lastname": "X", "telephone1": "1"}).status_code \
        == 403
    dv.control.put("/_sandbox/crm/field-security", json={
        "table": "contact", "column": "telephone1", "readers": ["nestor@contoso.com"]})
    assert nestor.get(f"{API}/contacts({ANA})?$select=telephone1").json()["telephone1"]
    assert alex.get(f"{API}/contacts({ANA})?$select=telephone1").json()["telephone1"] is None


# --- $batch --------------------------------------------------------------------------------


def _batch(parts: list[str], boundary: str = "batch_test") -> tuple[str, dict[str, str]]:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return body, {"Content-Type": f"multipart/mixed; boundary={boundary}"}


def _http_part(method: str, url: str, body: Any = None, content_id: str | None = None,
               headers: dict[str, str] | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    request = f"{method} {url} HTTP/1.1\r\n"
    for name, value in (headers or {}).items():
        request += f"{name}: {value}\r\n"
    if body is not None:
        request += "Content-Type: application/json\r\n\r\n" + json.dumps(body)
    else:
        request += "\r\n"
    return f"{head}\r\n{request}"


def _changeset(parts: list[str], boundary: str = "changeset_test") -> str:
    inner = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}"


def _responses(response: httpx.Response) -> list[tuple[int, str]]:
    """(status, body) of each inner response, change sets flattened."""
    import re

    return [(int(m.group(1)), m.group(2).strip()) for m in re.finditer(
        r"HTTP/1\.1 (\d{3})[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n(.*?)(?=\r\n--)", response.text,
        re.DOTALL)]


def test_batch_with_changeset_and_content_id(dv: DV) -> None:
    body, headers = _batch([
        _changeset([
            _http_part("POST", f"{dv.base_url}{API}/accounts", {"name": "Batch Co"}, "1"),
            _http_part("POST", f"{API}/contacts", {
                "lastname": "Batchson", "parentcustomerid_account@odata.bind": "$1"}, "2"),
            _http_part("PATCH", "$1", {"telephone1": "12345"}, "3"),
        ]),
        _http_part("GET", f"{API}/contacts?$select=lastname&$filter=lastname eq 'Batchson'"),
    ])
    response = dv.api().post(f"{API}/$batch", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert "changesetresponse_" in response.text and "Content-ID: 2" in response.text
    statuses = [status for status, _ in _responses(response)]
    assert statuses == [204, 204, 204, 200]
    contact = json.loads(_responses(response)[-1][1])["value"][0]
    rows = dv.control.get("/_sandbox/crm/contacts").json()["value"]
    created = next(r for r in rows if r["contactid"] == contact["contactid"])
    account = dv.control.get(f"/_sandbox/crm/accounts/{created['_parentcustomerid_value']}").json()
    assert account["name"] == "Batch Co" and account["telephone1"] == "12345"


def test_failing_changeset_rolls_back_everything(dv: DV) -> None:
    before = len(dv.control.get("/_sandbox/crm/contacts").json()["value"])
    body, headers = _batch([
        _changeset([
            _http_part("POST", f"{API}/contacts", {"lastname": "Rollback1"}, "1"),
            _http_part("PATCH", f"{API}/contacts({ANA})", {"jobtitle": "Changed"}, "2"),
            _http_part("POST", f"{API}/contacts", {"lastname": "Bad", "nosuch": 1}, "3"),
        ]),
    ])
    response = dv.api().post(f"{API}/$batch", content=body, headers=headers)
    assert response.status_code == 400
    assert [s for s, _ in _responses(response)] == [400]
    assert json.loads(_responses(response)[0][1])["error"]["code"] == "0x80060888"
    assert len(dv.control.get("/_sandbox/crm/contacts").json()["value"]) == before
    assert dv.control.get(f"/_sandbox/crm/contacts/{ANA}").json()["jobtitle"] is None


def test_batch_continue_on_error_and_inner_throttling(dv: DV) -> None:
    body, headers = _batch([
        _http_part("POST", f"{API}/contacts", {"lastname": "One"}),
        _http_part("GET", f"{API}/contacts(00000000-0000-0000-0000-000000000000)"),
        _http_part("POST", f"{API}/contacts", {"lastname": "Three"}),
    ])
    api = dv.api(Prefer="odata.continue-on-error")
    response = api.post(f"{API}/$batch", content=body, headers=headers)
    assert response.status_code == 200
    assert [s for s, _ in _responses(response)] == [204, 404, 204]
    stopped = dv.api().post(f"{API}/$batch", content=body, headers=headers)
    assert [s for s, _ in _responses(stopped)] == [204, 404]
    dv.control.post("/_sandbox/faults", json={"service": "dataverse", "kind": "status",
                                              "status": 429, "retry_after": 7, "count": 1})
    # The first fault shot hits the outer $batch request itself (the core middleware).
    outer = api.post(f"{API}/$batch", content=body, headers=headers)
    assert outer.status_code == 429
    # A rule for one impersonated user hits only the inner request that acts as that user.
    dv.control.post("/_sandbox/faults", json={"service": "dataverse", "kind": "status",
                                              "status": 429, "retry_after": 7, "count": 1,
                                              "user": MEGAN})
    body, headers = _batch([
        _http_part("GET", f"{API}/WhoAmI", headers={"CallerObjectId": MEGAN}),
        _http_part("GET", f"{API}/WhoAmI"),
    ])
    inner = api.post(f"{API}/$batch", content=body, headers=headers)
    assert inner.status_code == 200
    statuses = [s for s, _ in _responses(inner)]
    assert statuses == [429, 200] and "Retry-After: 7" in inner.text
    assert "0x80072322" in inner.text


def test_batch_limits(dv: DV) -> None:
    body, headers = _batch([_http_part("GET", f"{API}/WhoAmI")] * 1001)
    assert dv.api().post(f"{API}/$batch", content=body, headers=headers).status_code == 400
    body, headers = _batch([_changeset([_http_part("GET", f"{API}/WhoAmI")])])
    assert dv.api().post(f"{API}/$batch", content=body, headers=headers).status_code == 400


# --- control routes ------------------------------------------------------------------------


def test_control_routes(dv: DV) -> None:
    created = dv.control.post("/_sandbox/crm/emails", json={
        "owner": "megan@contoso.com", "subject": "Seeded", "statuscode": 6,
        "regardingobjectid_contact_email@odata.bind": f"/contacts({BOB})",
        "email_activity_parties": [{"participationtypemask": 2, "addressused": "a@b.c"}]})
    assert created.status_code == 201, created.text
    row = created.json()
    assert row["_ownerid_value"] == MEGAN_SU and row["statecode"] == 1
    assert row["email_activity_parties"][0]["addressused"] == "a@b.c"
    email_id = row["activityid"]
    patched = dv.control.patch(f"/_sandbox/crm/emails/{email_id}", json={"statuscode": 8})
    assert patched.json()["statecode"] == 0
    listed = dv.control.get("/_sandbox/crm/emails").json()
    assert any(r["activityid"] == email_id for r in listed["value"])
    assert dv.control.delete(f"/_sandbox/crm/emails/{email_id}").status_code == 204
    assert dv.control.get(f"/_sandbox/crm/emails/{email_id}").status_code == 404
