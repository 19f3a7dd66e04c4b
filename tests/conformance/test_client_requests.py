"""Every request our Graph and Dataverse clients send must agree with Microsoft's API
descriptions (tests/specs). The real clients run against the sandbox over HTTPS with an httpx
request hook that records what goes on the wire; each test then checks all of it and reports
every violation at once. The negative tests at the end show the validators catch mistakes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, unquote, urlencode

import httpx
import pytest

from shared.dataverse import DataverseClient, DataverseOperation
from shared.dataverse.batch import build_batch
from shared.domain import email_activity
from shared.domain.correlation import CorrelationMethod, RegardingRef
from shared.domain.outgoing import ACTIVITY_PROPERTY_ID, EmailStatus, build_send_mail, transition
from shared.domain.parties import PartyResolution, build_activity_parties
from shared.domain.tracking import TrackingDecision
from shared.graph import BatchRequest, GraphClient, new_transaction_id
from shared.http.retry import RetryPolicy
from shared.identity import AppTokenAuth, credential_from_settings
from shared.settings import Settings, load_settings
from shared.store.tracked import Regarding
from shared.sync import incoming, intents, outgoing
from tests.conformance import dataverse_requests, graph_requests
from tests.fixtures.sandbox import SandboxHandle

ALEX = "alex@contoso.com"
MEGAN = "megan@contoso.com"
ALEX_OID = "a1a1a1a1-0000-4000-8000-000000000001"
ALEX_USER = "51a1a1a1-0000-4000-8000-000000000001"
ANA = "c0000000-0000-4000-8000-000000000001"
BOB = "c0000000-0000-4000-8000-000000000002"
FABRIKAM = "ac000000-0000-4000-8000-000000000001"
RENEWAL = "0b000000-0000-4000-8000-000000000001"
CATEGORY = "Tracked to Dynamics 365"


class Recorder:
    """httpx request hook: keeps every request the client puts on the wire (retries too)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> None:
        await request.aread()
        self.requests.append(request)

    def problems(self, problems_of: Callable[[httpx.Request], list[str]]) -> list[str]:
        assert self.requests, "nothing was recorded"
        return [p for r in self.requests for p in problems_of(r)]

    def assert_conform(self, problems_of: Callable[[httpx.Request], list[str]]) -> None:
        """Every recorded request conforms; all problems are reported together."""
        problems = self.problems(problems_of)
        assert not problems, f"{len(problems)} non-conformances in {len(self.requests)} " \
            "requests:\n" + "\n".join(problems)


def fast_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, max_total_wait=1.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def settings(sandbox: SandboxHandle) -> Settings:
    return load_settings({**sandbox.env, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})


@pytest.fixture
async def graph(fresh_sandbox: SandboxHandle, settings: Settings
                ) -> AsyncIterator[tuple[GraphClient, Recorder]]:
    recorder = Recorder()
    credential = credential_from_settings(settings)
    client = GraphClient(settings.graph_base_url, AppTokenAuth(credential, settings.graph_scope),
                         retry=fast_retry(), event_hooks={"request": [recorder]})
    try:
        yield client, recorder
    finally:
        await client.aclose()
        await credential.close()


@pytest.fixture
async def crm(fresh_sandbox: SandboxHandle, settings: Settings
              ) -> AsyncIterator[tuple[DataverseClient, Recorder]]:
    recorder = Recorder()
    credential = credential_from_settings(settings)
    client = DataverseClient(settings.dataverse_api_url,
                             AppTokenAuth(credential, settings.dataverse_scope),
                             retry=fast_retry(), event_hooks={"request": [recorder]})
    try:
        yield client, recorder
    finally:
        await client.aclose()
        await credential.close()


def deliver(sandbox: SandboxHandle, to: str, subject: str) -> dict:
    response = sandbox.control.post("/_sandbox/graph/deliver", json={
        "from": "ana@fabrikam.com", "to": [to], "subject": subject, "body": "<p>hi</p>"})
    response.raise_for_status()
    return response.json()["value"][0]


# --- Graph ------------------------------------------------------------------------------------


async def test_graph_folders_delta_and_messages(fresh_sandbox: SandboxHandle, graph) -> None:
    client, recorder = graph
    for n in range(3):
        deliver(fresh_sandbox, ALEX, f"Backlog {n}")
    await client.get_mailbox_settings(ALEX)
    inbox = await client.get_mail_folder(ALEX, "inbox")
    children = [f async for f in client.list_child_folders(
        ALEX, inbox["id"], select=["id", "displayName", "parentFolderId"])]
    assert children
    await client.get_json(f"/users/{ALEX}/mailFolders/sentitems")
    for probe in ("events", "contacts"):  # the mailbox health check's probes
        await client.get_json(f"/users/{ALEX}/{probe}", params={"$top": "1", "$select": "id"})
    await client.get_json(f"/users/{ALEX}/todo/lists", params={"$top": "1"})
    await client.get_json(f"/users/{ALEX}/events", params={  # the add-in's iCalUId lookup
        "$filter": "iCalUId eq 'uid-1'", "$select": "id", "$top": "1"})

    pages = [p async for p in client.delta_messages(ALEX, "inbox", select=["subject"],
                                                    page_size=2)]
    assert len(pages) >= 2 and pages[0].next_link and pages[-1].delta_link
    rest = [p async for p in client.delta_messages(ALEX, "inbox", link=pages[0].next_link)]
    assert rest
    deliver(fresh_sandbox, ALEX, "Fresh one")
    changes = [p async for p in client.delta_messages(ALEX, "inbox", link=pages[-1].delta_link)]
    assert [m["subject"] for p in changes for m in p.items] == ["Fresh one"]

    message_id = pages[0].items[0]["id"]
    await client.get_message(ALEX, message_id, select=["subject", "internetMessageId"])
    await client.get_message(
        ALEX, message_id, select=["subject"],
        expand=f"singleValueExtendedProperties($filter=id eq '{ACTIVITY_PROPERTY_ID}')")
    listed = [m async for m in client.list_messages(
        ALEX, "inbox", filter="isRead eq false", select=["subject", "receivedDateTime"],
        orderby="receivedDateTime desc", top=2)]
    assert len(listed) == 2
    [m async for m in client.list_messages(ALEX, filter="subject eq 'Fresh one'",
                                           select=["id"])]
    updated = await client.update_message(ALEX, message_id, {"categories": [CATEGORY],
                                                             "isRead": True})
    assert updated["categories"] == [CATEGORY]
    archive = await client.get_mail_folder(ALEX, "archive")
    await client.move_message(ALEX, message_id, archive["id"])
    await client.delete_message(ALEX, message_id)
    recorder.assert_conform(graph_requests.httpx_request_problems)

async def test_graph_send_draft_and_marker(graph) -> None:
    client, recorder = graph
    activity_id = str(uuid.uuid4())
    await client.send_mail(ALEX, {
        "subject": "Renewal quote", "body": {"contentType": "html", "content": "<p>Hi</p>"},
        "toRecipients": [{"emailAddress": {"address": MEGAN}}],
        "ccRecipients": [{"emailAddress": {"address": "ana@fabrikam.com", "name": "Ana"}}],
        "internetMessageHeaders": [{"name": "x-sss-activity-id", "value": activity_id}],
        "singleValueExtendedProperties": [{"id": ACTIVITY_PROPERTY_ID, "value": activity_id}]})
    sent = await client.find_sent_message_by_marker(ALEX, ACTIVITY_PROPERTY_ID, activity_id)
    assert sent is not None
    draft = await client.create_draft(ALEX, {
        "subject": "Draft", "body": {"contentType": "text", "content": "x"},
        "toRecipients": [{"emailAddress": {"address": MEGAN, "name": "Megan"}}],
        "singleValueExtendedProperties": [{"id": ACTIVITY_PROPERTY_ID, "value": "a-1"}]})
    await client.send_draft(ALEX, draft["id"])
    await client.send_mail(ALEX, {"subject": "Test", "toRecipients": [
        {"emailAddress": {"address": ALEX}}]}, save_to_sent_items=False)
    recorder.assert_conform(graph_requests.httpx_request_problems)


async def test_graph_send_mail_as_the_outgoing_engine_builds_it(graph) -> None:
    client, recorder = graph
    outgoing = build_send_mail(
        {"subject": "Renewal quote", "description": "<p>Attached.</p>"},
        [{"participationtypemask": 2, "addressused": MEGAN},
         {"participationtypemask": 3, "addressused": "ana@fabrikam.com"}],
        activity_id=str(uuid.uuid4()), in_reply_to="<orig-1@fabrikam.com>")
    await client.send_mail(ALEX, outgoing.payload["message"],
                           save_to_sent_items=outgoing.payload["saveToSentItems"])
    recorder.assert_conform(graph_requests.httpx_request_problems)


async def test_graph_categories_and_batch(fresh_sandbox: SandboxHandle, graph) -> None:
    client, recorder = graph
    await client.ensure_master_category(ALEX, CATEGORY)
    await client.ensure_master_category(ALEX, CATEGORY)
    ids = [deliver(fresh_sandbox, ALEX, f"Bulk {n}")["immutableId"] for n in range(22)]
    answers = await client.patch_messages_categories(ALEX, [(i, [CATEGORY]) for i in ids])
    assert all(a.ok for a in answers)
    answers = await client.batch([
        BatchRequest("GET", f"/users/{ALEX}/mailFolders/inbox"),
        BatchRequest("GET", f"/users/{ALEX}/messages/{ids[0]}?$select=subject,categories"),
        BatchRequest("PATCH", f"/users/{ALEX}/messages/{ids[1]}", body={"isRead": True},
                     id="p1"),
        BatchRequest("DELETE", f"/users/{ALEX}/messages/{ids[2]}", depends_on=["p1"]),
    ])
    assert [a.status for a in answers][:3] == [200, 200, 200]
    recorder.assert_conform(graph_requests.httpx_request_problems)

async def test_graph_events(graph) -> None:
    client, recorder = graph
    body = {"subject": "Review", "body": {"contentType": "html", "content": "<p>Agenda</p>"},
            "start": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-01T11:00:00", "timeZone": "UTC"},
            "location": {"displayName": "Room 1"},
            "attendees": [{"emailAddress": {"address": MEGAN}, "type": "required"}]}
    event = await client.create_event(ALEX, body, transaction_id=new_transaction_id())
    await client.get_event(ALEX, event["id"], select=["subject", "start", "end"])
    pages = [p async for p in client.delta_events(ALEX, start="2026-11-01T00:00:00Z",
                                                  end="2027-01-01T00:00:00Z", page_size=1)]
    assert event["id"] in [e["id"] for p in pages for e in p.items]
    await client.update_event(ALEX, event["id"], {"subject": "Review 2"})
    again = [p async for p in client.delta_events(ALEX, start="2026-11-01T00:00:00Z",
                                                  end="2027-01-01T00:00:00Z",
                                                  link=pages[-1].delta_link)]
    assert [e["subject"] for p in again for e in p.items] == ["Review 2"]
    [i async for i in client.list_event_instances(ALEX, event["id"],
                                                  start="2026-11-01T00:00:00Z",
                                                  end="2027-01-01T00:00:00Z",
                                                  select=["subject"])]
    await client.delete_event(ALEX, event["id"])
    recorder.assert_conform(graph_requests.httpx_request_problems)

async def test_graph_contacts_and_tasks(graph) -> None:
    client, recorder = graph
    contact = await client.create_contact(ALEX, {
        "givenName": "Ana", "surname": "Lopez", "companyName": "Fabrikam",
        "emailAddresses": [{"address": "ana@fabrikam.com", "name": "Ana Lopez"}],
        "businessPhones": ["+1 555 0100"]})
    pages = [p async for p in client.delta_contacts(ALEX, select=["displayName",
                                                                  "emailAddresses"])]
    await client.update_contact(ALEX, contact["id"], {"jobTitle": "Buyer"})
    [p async for p in client.delta_contacts(ALEX, link=pages[-1].delta_link)]
    await client.delete_contact(ALEX, contact["id"])

    lists = await client.list_todo_lists(ALEX)
    list_id = lists[0]["id"]
    task = await client.create_task(ALEX, list_id, {
        "title": "Call back", "importance": "high",
        "body": {"contentType": "text", "content": "About the quote"},
        "dueDateTime": {"dateTime": "2026-12-02T00:00:00", "timeZone": "UTC"}})
    pages = [p async for p in client.delta_tasks(ALEX, list_id)]
    await client.update_task(ALEX, list_id, task["id"], {"status": "completed"})
    [p async for p in client.delta_tasks(ALEX, list_id, link=pages[-1].delta_link)]
    await client.delete_task(ALEX, list_id, task["id"])
    recorder.assert_conform(graph_requests.httpx_request_problems)


async def test_graph_reads_the_engines_make(fresh_sandbox: SandboxHandle, graph) -> None:
    """The engines' own $select/$expand constants, as they pass them to the client."""
    client, recorder = graph
    message = deliver(fresh_sandbox, ALEX, "Engine read")["immutableId"]
    await client.get_message(ALEX, message, select=list(intents.MESSAGE_SELECT),
                             expand=incoming.THREAD_EXPAND)
    [p async for p in client.delta_messages(ALEX, "inbox", select=incoming.SELECT)]
    params = urlencode({"$select": ",".join(incoming.SELECT)}, quote_via=quote)
    # _retry_pending: mailbox ids are Entra object ids
    answers = await client.batch([BatchRequest("GET", f"/users/{quote(ALEX_OID)}/messages/"
                                                      f"{quote(message)}?{params}")])
    assert answers[0].ok
    event = await client.create_event(ALEX, {
        "subject": "Sync", "start": {"dateTime": "2026-12-03T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-03T10:30:00", "timeZone": "UTC"}})
    await client.get_event(ALEX, event["id"], select=list(intents.EVENT_SELECT))
    recorder.assert_conform(graph_requests.httpx_request_problems)


# --- Dataverse --------------------------------------------------------------------------------


async def test_dataverse_reads(crm) -> None:
    client, recorder = crm
    await client.whoami()
    await client.impersonate(ALEX_OID).whoami()
    for n in range(3):
        await client.create("contacts", {"firstname": "Paged", "lastname": f"Paged {n}",
                                         "emailaddress1": f"paged{n}@example.org"})
    rows = [r async for r in client.list(
        "contacts", select=["contactid", "lastname", "_ownerid_value"],
        filter="statecode eq 0 and startswith(lastname,'Paged')", orderby="lastname asc",
        page_size=2)]
    assert len(rows) == 3
    [r async for r in client.list("contacts", select=["lastname"], top=2)]
    [r async for r in client.list(
        "emails", select=["activityid", "subject", "statuscode", "_regardingobjectid_value"],
        filter=f"(statuscode eq 6 or statuscode eq 7) and email_activity_parties/any(p: "
               f"p/participationtypemask eq 1 and p/_partyid_value eq {ALEX_USER})",
        expand="email_activity_parties($select=participationtypemask,addressused,"
               "_partyid_value)", orderby="createdon asc")]
    found = await client.find_by_addresses(
        "contacts", ["emailaddress1", "emailaddress2", "emailaddress3"],
        ["ANA@fabrikam.com", "nobody@example.org"], select=["contactid", "emailaddress1"],
        filter="statecode eq 0")
    assert [r["contactid"] for r in found] == [ANA]
    await client.find_by_addresses("systemusers", ["internalemailaddress"], [ALEX],
                                   select=["systemuserid", "fullname", "isdisabled"])
    assert await client.get("contacts", ANA, select=["fullname", "emailaddress1"])
    assert await client.get("contacts", str(uuid.uuid4())) is None
    recorder.assert_conform(dataverse_requests.httpx_request_problems)

async def test_dataverse_queries_the_engines_make(crm) -> None:
    """The engines' own selects, filters and expands, as they pass them to the client."""
    client, recorder = crm
    [r async for r in client.impersonate(ALEX_OID).list(
        "emails", select=outgoing.SELECT, expand=outgoing.PARTY_EXPAND, orderby="createdon asc",
        filter=f"(statuscode eq {int(EmailStatus.PENDING_SEND)} or statuscode eq "
               f"{int(EmailStatus.SENDING)}) and email_activity_parties/any(p: "
               f"p/participationtypemask eq 1 and p/_partyid_value eq {ALEX_USER})")]
    [r async for r in client.list(  # scheduler: who has mail to send
        "emails", select=["activityid"], filter="statuscode eq 6 or statuscode eq 7",
        expand="email_activity_parties($select=_partyid_value,participationtypemask)")]
    for entity_set, column in outgoing.ADDRESS_TABLES:
        await client.get(entity_set, ANA, select=[column])
    for table, name in intents.PRIMARY_NAME.items():
        await client.get(email_activity.entity_set(table), str(uuid.uuid4()), select=[name])
    await client.get("emails", str(uuid.uuid4()), select=incoming.EMAIL_SELECT)
    for entity_set, flt in (("emails", "messageid eq '<m1@fabrikam.com>'"),
                            ("appointments", "globalobjectid eq 'uid-1'")):
        [r async for r in client.list(entity_set, select=["activityid"], filter=flt, top=1)]
    for query in (f"azureactivedirectoryobjectid eq {ALEX_OID}",
                  "internalemailaddress eq 'alex@contoso.com'",
                  "isdisabled eq false and azureactivedirectoryobjectid ne null"):
        [r async for r in client.list(
            "systemusers", select=["systemuserid", "azureactivedirectoryobjectid",
                                   "internalemailaddress", "fullname", "isdisabled"],
            filter=query, top=2)]
    operations = [op for _, op in intents.party_operations(["ana@fabrikam.com", ALEX])]
    for op in operations:  # how intents._rows runs them
        entity_set, _, query = op.path.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&"))
        [r async for r in client.list(entity_set, select=params["$select"].split(","),
                                      filter=unquote(params["$filter"]))]
    assert all(r.ok for r in await client.batch(operations))
    recorder.assert_conform(dataverse_requests.httpx_request_problems)


async def test_dataverse_email_writes_and_send(crm) -> None:
    client, recorder = crm
    message = {"subject": "Renewal quote", "internetMessageId": "<m1@fabrikam.com>",
               "body": {"contentType": "html", "content": "<p>Quote?</p>"},
               "from": {"emailAddress": {"address": "ana@fabrikam.com"}},
               "toRecipients": [{"emailAddress": {"address": ALEX}}],
               "receivedDateTime": "2026-11-20T09:00:00Z",
               "sentDateTime": "2026-11-20T08:59:00Z"}
    parties = build_activity_parties("ana@fabrikam.com", [ALEX], resolutions={
        "ana@fabrikam.com": PartyResolution("contact", ANA, "ana@fabrikam.com"),
        ALEX: PartyResolution("systemuser", ALEX_USER, ALEX)})
    decision = TrackingDecision(True, "regarding", RegardingRef("contact", ANA),
                                CorrelationMethod.NONE)
    body = email_activity.build_incoming_email(message, decision, parties,
                                               tracking_token="CRM:0001")
    first = await client.create("emails", body)
    reply = email_activity.build_incoming_email(
        {**message, "internetMessageId": "<m2@fabrikam.com>"},
        TrackingDecision(True, "reply", RegardingRef("opportunity", RENEWAL),
                         CorrelationMethod.IN_REPLY_TO, parent_activity_id=first), parties)
    assert email_activity.parent_activity_bind(first).keys() <= reply.keys()
    await client.create("emails", reply)
    row = await client.get("emails", first, select=["subject", "statuscode"],
                           expand="email_activity_parties($select=participationtypemask,"
                                  "addressused,_partyid_value)")
    assert row is not None

    outgoing = await client.create("emails", {
        "subject": "Quote", "description": "<p>Attached</p>", "directioncode": True,
        "email_activity_parties": [
            {"participationtypemask": 1, "partyid_systemuser@odata.bind":
                f"/systemusers({ALEX_USER})"},
            {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({ANA})"},
            {"participationtypemask": 3, "addressused": "someone@example.org"}],
        "regardingobjectid_account_email@odata.bind": f"/accounts({FABRIKAM})"})
    await client.execute(f"emails({outgoing})/Microsoft.Dynamics.CRM.SendEmail",
                         {"IssueSend": True})
    current = await client.get("emails", outgoing, select=["statuscode", "statecode"])
    assert current is not None and current["statuscode"] == EmailStatus.PENDING_SEND
    await client.update("emails", outgoing, transition(EmailStatus.PENDING_SEND,
                                                       EmailStatus.SENDING),
                        etag=current["@odata.etag"])
    await client.update("emails", outgoing, {
        **transition(EmailStatus.SENDING, EmailStatus.SENT), "messageid": "<s1@contoso.com>"})
    await client.update("emails", first, {  # the add-in setting regarding on a tracked email
        "regardingobjectid_account_email@odata.bind": f"/accounts({FABRIKAM})"})


async def test_dataverse_add_in_creates(crm) -> None:
    """The add-in's create bodies (intents.build_email / build_appointment)."""
    client, recorder = crm
    resolutions = {"ana@fabrikam.com": PartyResolution("contact", ANA, "ana@fabrikam.com"),
                   ALEX: PartyResolution("systemuser", ALEX_USER, ALEX)}
    message = {"subject": "Order", "internetMessageId": "<m3@fabrikam.com>",
               "body": {"contentType": "text", "content": "Line 1\nLine 2"},
               "from": {"emailAddress": {"address": "ana@fabrikam.com"}},
               "toRecipients": [{"emailAddress": {"address": ALEX}}],
               "ccRecipients": [{"emailAddress": {"address": "dan@tailspin.example"}}],
               "receivedDateTime": "2026-11-20T09:00:00Z"}
    await client.create("emails", intents.build_email(
        message, Regarding(table="lead", id="1e000000-0000-4000-8000-000000000001"),
        resolutions))
    event = {"subject": "Renewal call", "iCalUId": "uid-renewal",
             "body": {"contentType": "html", "content": "<p>Agenda</p>"},
             "start": {"dateTime": "2026-12-01T10:00:00.0000000", "timeZone": "UTC"},
             "end": {"dateTime": "2026-12-01T11:00:00.0000000", "timeZone": "UTC"},
             "location": {"displayName": "Teams"}, "isAllDay": False,
             "organizer": {"emailAddress": {"address": ALEX}},
             "attendees": [{"type": "required", "emailAddress": {"address": "ana@fabrikam.com"}},
                           {"type": "optional", "emailAddress": {"address": MEGAN}}]}
    await client.create("appointments", intents.build_appointment(
        event, Regarding(table="opportunity", id=RENEWAL), resolutions))
    recorder.assert_conform(dataverse_requests.httpx_request_problems)
    recorder.assert_conform(dataverse_requests.httpx_request_problems)

async def test_dataverse_crud_upsert_delete(crm) -> None:
    client, recorder = crm
    account = await client.create("accounts", {"name": "Tailspin",
                                               "emailaddress1": "hi@tailspin.example"},
                                  return_representation=True)
    contact_id = await client.create("contacts", {
        "firstname": "Eve", "lastname": "Stone", "emailaddress1": "eve@example.org",
        "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})"})
    row = await client.get("contacts", contact_id, select=["lastname", "_parentcustomerid_value"])
    assert row is not None
    await client.update("contacts", contact_id, {"jobtitle": "Buyer"}, etag=row["@odata.etag"])
    chosen = str(uuid.uuid4())
    await client.upsert("contacts", chosen, {"lastname": "Chosen"}, only_create=True)
    await client.upsert("contacts", chosen, {"lastname": "Again", "telephone1": "+1 555"})
    fresh = await client.get("contacts", chosen, select=["lastname"])
    assert fresh is not None
    await client.delete("contacts", chosen, etag=fresh["@odata.etag"])
    await client.delete("contacts", contact_id)
    recorder.assert_conform(dataverse_requests.httpx_request_problems)

async def test_dataverse_batches(crm) -> None:
    client, recorder = crm
    results = await client.batch([
        DataverseOperation.create("contacts", {"lastname": "Batch A"}),
        DataverseOperation.update("contacts", ANA, {"jobtitle": "Director"}),
        DataverseOperation.upsert("contacts", str(uuid.uuid4()), {"lastname": "Batch U"}),
        DataverseOperation.get(f"contacts({ANA})?$select=jobtitle"),
    ], atomic=True)
    assert [r.status for r in results] == [204, 204, 204, 200]
    results = await client.batch([
        DataverseOperation.create("contacts", {"lastname": "Solo 1"}),
        DataverseOperation.delete("contacts", str(uuid.uuid4())),
        DataverseOperation.update("emails", str(uuid.uuid4()), transition(
            EmailStatus.SENDING, EmailStatus.FAILED)),
        DataverseOperation.get(f"contacts({BOB})?$select=lastname,emailaddress1"),
    ])
    assert results[0].ok and results[3].ok
    await client.impersonate(ALEX_OID).batch([DataverseOperation.get(
        f"contacts({ANA})?$select=lastname")])
    recorder.assert_conform(dataverse_requests.httpx_request_problems)


# --- the validators catch wrong requests -------------------------------------------------------

GRAPH = "https://graph.example/v1.0"
DV = "https://org.example/api/data/v9.2"


def graph_problems(method: str, url: str, body: object = None) -> list[str]:
    request = httpx.Request(method, GRAPH + url, json=body) if body is not None else \
        httpx.Request(method, GRAPH + url)
    return graph_requests.httpx_request_problems(request)


def test_graph_validator_catches_wrong_requests() -> None:
    assert not graph_problems("PATCH", f"/users/{ALEX}/messages/AAA", {"categories": ["x"]})
    assert not graph_problems("POST", f"/users/{ALEX}/sendMail",
                              {"message": {"subject": "x"}, "saveToSentItems": True})
    assert not graph_problems("GET", f"/users/{ALEX}/calendarView/delta?$deltatoken=abc")

    (problem,) = graph_problems("PATCH", f"/users/{ALEX}/messages/AAA", {"colour": "red"})
    assert "$.colour: not declared" in problem
    assert graph_problems("PATCH", f"/users/{ALEX}/messages/AAA", {"isRead": "yes"})
    assert graph_problems("POST", f"/users/{ALEX}/sendMail", {"message": {"subjekt": "x"}})
    assert graph_problems("PUT", f"/users/{ALEX}/messages/AAA", {"isRead": True})
    assert graph_problems("GET", f"/users/{ALEX}/messages?$top=5&$fields=subject")
    assert graph_problems("GET", f"/users/{ALEX}/messages?$select=subject,colour")
    missing = graph_problems("GET", f"/users/{ALEX}/calendarView/delta?$top=2")
    assert len(missing) == 2 and all("required query option" in p for p in missing)
    assert graph_problems("GET", f"/users/{ALEX}/messages?$deltatoken=abc")


def test_graph_batch_validator_checks_envelope_and_inner_requests() -> None:
    ok = {"requests": [{"id": "1", "method": "GET", "url": f"/users/{ALEX}/mailFolders/inbox"},
                       {"id": "2", "method": "PATCH", "url": f"/users/{ALEX}/messages/A",
                        "headers": {"Content-Type": "application/json"},
                        "body": {"categories": ["x"]}, "dependsOn": ["1"]}]}
    assert not graph_problems("POST", "/$batch", ok)
    bad = {"requests": [
        {"id": "1", "method": "PATCH", "url": f"/users/{ALEX}/messages/A",
         "body": {"colour": "red"}},
        {"id": "1", "method": "GET", "url": f"users/{ALEX}/mailFolders/inbox"},
        {"id": "3", "method": "GET", "url": f"/users/{ALEX}/mailFolders/inbox",
         "dependsOn": ["99"]},
    ] + [{"id": str(n), "method": "GET", "url": f"/users/{ALEX}/mailFolders/inbox"}
         for n in range(4, 23)]}
    text = "\n".join(graph_problems("POST", "/$batch", bad))
    for expected in ("22 requests", "ids are not unique", "headers are required",
                     "$.colour: not declared", "start with '/'", "dependsOn '99'"):
        assert expected in text, expected


def dataverse_problems(method: str, path: str, body: object = None) -> list[str]:
    request = httpx.Request(method, f"{DV}/{path}", json=body) if body is not None else \
        httpx.Request(method, f"{DV}/{path}")
    return dataverse_requests.httpx_request_problems(request)


def test_dataverse_validator_catches_wrong_requests() -> None:
    assert not dataverse_problems("GET", "contacts?$select=contactid,_ownerid_value")
    (problem,) = dataverse_problems("GET", "contacts?$select=contactid,favouritecolour")
    assert "'favouritecolour' is not a column of contact" in problem
    assert dataverse_problems("GET", "contacts?$select=ownerid")  # must be _ownerid_value
    assert dataverse_problems("GET", "contacts?$filter=favouritecolour eq 'red'")
    assert dataverse_problems("GET", "widgets")
    (problem,) = dataverse_problems("PATCH", f"emails({ANA})", {"statecode": 1,
                                                                 "statuscode": 9})
    assert "statuscode=9: not one of the options" in problem
    assert dataverse_problems("PATCH", f"emails({ANA})", {"statecode": 0, "statuscode": 4})
    assert dataverse_problems("POST", "emails", {
        "subject": "x", "regardingobjectid_contact@odata.bind": f"/contacts({ANA})"})
    assert dataverse_problems("POST", "emails", {
        "subject": "x", "email_activity_parties": [{"participationtypemask": 2,
                                                    "emailaddress": "a@b.example"}]})
    assert dataverse_problems("POST", "emails", {"subject": "x" * 801})
    assert dataverse_problems("POST", f"emails({ANA})/Microsoft.Dynamics.CRM.SendEmail",
                              {"issueSend": True})


def test_dataverse_batch_validator_parses_and_checks_inner_requests() -> None:
    good = [DataverseOperation.create("contacts", {"lastname": "A"}),
            DataverseOperation.get(f"contacts({ANA})?$select=lastname")]
    content_type, body = build_batch(good, DV, atomic=True)
    request = httpx.Request("POST", f"{DV}/$batch", content=body,
                            headers={"Content-Type": content_type})
    assert not dataverse_requests.httpx_request_problems(request)
    bad = [DataverseOperation.create("contacts", {"lastname": "A", "favouritecolour": "red"}),
           DataverseOperation.get(f"contacts({ANA})?$select=nickname_x")]
    content_type, body = build_batch(bad, DV, atomic=False)
    request = httpx.Request("POST", f"{DV}/$batch", content=body,
                            headers={"Content-Type": content_type})
    text = "\n".join(dataverse_requests.httpx_request_problems(request))
    assert "'favouritecolour' is not an attribute of contact" in text
    assert "'nickname_x' is not a column of contact" in text
    broken = body.replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    request = httpx.Request("POST", f"{DV}/$batch", content=broken,
                            headers={"Content-Type": content_type})
    assert any("request line" in p for p in dataverse_requests.httpx_request_problems(request))
