"""Add-in track / status / untrack / set regarding end to end, through function_app.py."""

from __future__ import annotations

import pytest

from tests.e2e.test_addin_support import (
    ALEX,
    ALEX_OID,
    ALEX_SYSTEMUSER,
    ANA,
    BOB,
    CATEGORY,
    FABRIKAM,
    MEGAN,
    call,
    crm_rows,
    deliver,
    emails_with,
    item_id,
    message_by_imid,
    status,
    table_rows,
    track,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e


async def test_track_email_creates_one_activity_with_parties_regarding_and_category(
        app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX], sender="ana@fabrikam.com", cc=["dan@tailspin.example"])
    imid = ids[ALEX]["internetMessageId"]
    response = await track(app_host, item_id(ids[ALEX]),
                           regarding={"table": "account", "id": FABRIKAM})
    assert response.status == 200, response.body
    body = response.json()
    assert body["state"] == "done" and body["outcome"] == "created"
    assert body["status"]["tracked"] is True
    assert body["status"]["regarding"] == {"table": "account", "id": FABRIKAM,
                                           "name": "Fabrikam"}
    assert body["status"]["tracked_by"] == ALEX_OID

    rows = emails_with(app_host, imid)
    assert len(rows) == 1
    activity = rows[0]
    assert activity["activityid"] == body["status"]["activity_id"]
    assert activity["_regardingobjectid_value"] == FABRIKAM
    assert activity["_ownerid_value"] == ALEX_SYSTEMUSER
    parties = {(p["participationtypemask"], p.get("_partyid_value"), p["addressused"])
               for p in activity["email_activity_parties"]}
    assert (1, ANA, "ana@fabrikam.com") in parties                       # sender -> contact
    assert (2, ALEX_SYSTEMUSER, "alex@contoso.com") in parties           # to -> user
    assert (3, "1e000000-0000-4000-8000-000000000001", "dan@tailspin.example") in parties
    assert CATEGORY in message_by_imid(app_host, ALEX, imid)["categories"]


async def test_second_participant_finds_the_same_activity(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX, MEGAN], sender="bob@northwind.example")
    imid = ids[ALEX]["internetMessageId"]
    first = await track(app_host, item_id(ids[ALEX]))
    assert first.status == 200, first.body
    second = await track(app_host, item_id(ids[MEGAN]), upn=MEGAN)
    assert second.status == 200, second.body
    assert second.json()["outcome"] == "existing"
    assert second.json()["status"]["activity_id"] == first.json()["status"]["activity_id"]
    assert len(emails_with(app_host, imid)) == 1
    assert CATEGORY in message_by_imid(app_host, MEGAN, imid)["categories"]
    # the same status for both participants, whoever tracked it
    a, m = await status(app_host, imid), await status(app_host, imid, upn=MEGAN)
    assert a.status == m.status == 200
    assert a.json() == m.json()
    assert a.json()["tracked"] is True and a.json()["tracked_by"] == ALEX_OID


async def test_replay_does_the_work_once_and_answers_the_same(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    headers = {"Idempotency-Key": "replay-1"}
    first = await track(app_host, item_id(ids[ALEX]), headers=headers)
    second = await track(app_host, item_id(ids[ALEX]), headers=headers)
    assert first.status == second.status == 200
    assert first.json() == second.json()
    # derived key (no header): the same request twice is one intent as well
    third = await track(app_host, item_id(ids[ALEX]))
    fourth = await track(app_host, item_id(ids[ALEX]))
    assert third.json() == fourth.json()
    assert len(emails_with(app_host, imid)) == 1
    intents = await table_rows(app_host, "intents")
    assert len(intents) == 2


async def test_idempotency_key_reused_for_another_request_is_refused(
        app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX, MEGAN])
    headers = {"Idempotency-Key": "same-key"}
    assert (await track(app_host, item_id(ids[ALEX]), headers=headers)).status == 200
    other = deliver(app_host, [ALEX])
    response = await track(app_host, item_id(other[ALEX]), headers=headers)
    assert response.status == 422
    assert response.json()["field"] == "Idempotency-Key"


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "caf\u00e9"])
async def test_bad_idempotency_key_is_400(app_host: FunctionHost, key: str) -> None:
    ids = deliver(app_host, [ALEX])
    response = await track(app_host, item_id(ids[ALEX]), headers={"Idempotency-Key": key})
    assert response.status == 400
    assert response.json()["field"] == "Idempotency-Key"
    assert await table_rows(app_host, "intents") == []


async def test_set_regarding_changes_the_record(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    assert (await track(app_host, item_id(ids[ALEX]))).status == 200
    response = await call(app_host, "addin_set_regarding", "POST", "regarding",
                          body={"item_id": item_id(ids[ALEX]),
                                "regarding": {"table": "contact", "id": ANA}})
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "updated"
    assert response.json()["status"]["regarding"]["name"] == "Ana Lopez"
    assert emails_with(app_host, imid)[0]["_regardingobjectid_value"] == ANA
    st = await status(app_host, imid)
    assert st.json()["regarding"] == {"table": "contact", "id": ANA, "name": "Ana Lopez"}


async def test_set_regarding_to_unreadable_record_is_403_and_writes_nothing(
        app_host: FunctionHost) -> None:
    ids = deliver(app_host, [MEGAN], sender="bob@northwind.example")
    response = await call(app_host, "addin_set_regarding", "POST", "regarding", upn=MEGAN,
                          body={"item_id": item_id(ids[MEGAN]),
                                "regarding": {"table": "contact", "id": ANA}})
    assert response.status == 403, response.body
    assert response.content_type == "application/problem+json"
    assert response.json()["field"] == "regarding.id"
    assert await table_rows(app_host, "intents") == []
    assert emails_with(app_host, ids[MEGAN]["internetMessageId"]) == []


async def test_regarding_of_a_disallowed_table_is_400(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX])
    response = await track(app_host, item_id(ids[ALEX]),
                           regarding={"table": "systemuser", "id": ALEX_SYSTEMUSER})
    assert response.status == 400
    assert response.json()["field"] == "regarding.table"
    assert await table_rows(app_host, "intents") == []


async def test_megan_can_link_her_own_and_shared_records(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [MEGAN], sender="bob@northwind.example")
    response = await track(app_host, item_id(ids[MEGAN]), upn=MEGAN,
                           regarding={"table": "contact", "id": BOB})
    assert response.status == 200, response.body
    assert response.json()["status"]["regarding"]["name"] == "Bob Kelly"


async def test_untrack_by_owner_deletes_the_activity(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX, MEGAN])
    imid = ids[ALEX]["internetMessageId"]
    assert (await track(app_host, item_id(ids[ALEX]))).status == 200
    assert (await track(app_host, item_id(ids[MEGAN]), upn=MEGAN)).status == 200
    response = await call(app_host, "addin_untrack", "POST", "untrack",
                          body={"item_id": item_id(ids[ALEX])})
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "deleted"
    assert emails_with(app_host, imid) == []
    assert CATEGORY not in message_by_imid(app_host, ALEX, imid)["categories"]
    assert CATEGORY not in message_by_imid(app_host, MEGAN, imid)["categories"]
    for upn in (ALEX, MEGAN):
        st = await status(app_host, imid, upn=upn)
        assert st.json()["tracked"] is False


async def test_untrack_by_non_owner_only_removes_their_tracking(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX, MEGAN])
    imid = ids[ALEX]["internetMessageId"]
    assert (await track(app_host, item_id(ids[ALEX]))).status == 200
    assert (await track(app_host, item_id(ids[MEGAN]), upn=MEGAN)).status == 200
    response = await call(app_host, "addin_untrack", "POST", "untrack", upn=MEGAN,
                          body={"item_id": item_id(ids[MEGAN])})
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "unlinked"
    assert len(emails_with(app_host, imid)) == 1
    assert CATEGORY not in message_by_imid(app_host, MEGAN, imid)["categories"]
    assert CATEGORY in message_by_imid(app_host, ALEX, imid)["categories"]
    assert (await status(app_host, imid)).json()["tracked"] is True


async def test_status_of_an_untracked_message_and_of_someone_elses(app_host: FunctionHost
                                                                   ) -> None:
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    response = await status(app_host, imid)
    assert response.status == 200
    assert response.json() == {"key": imid, "tracked": False, "state": "not_tracked"}
    # megan holds no copy: she learns nothing about it
    assert (await status(app_host, imid, upn=MEGAN)).status == 404


async def test_track_appointment(app_host: FunctionHost) -> None:
    event = app_host.sandbox.control.post(
        f"/_sandbox/graph/mailboxes/{ALEX}/events",
        json={"subject": "Renewal call", "start": {"dateTime": "2030-01-10T10:00:00",
                                                    "timeZone": "UTC"},
              "end": {"dateTime": "2030-01-10T11:00:00", "timeZone": "UTC"},
              "attendees": [{"emailAddress": {"address": "ana@fabrikam.com"},
                             "type": "required"},
                            {"emailAddress": {"address": "dan@tailspin.example"},
                             "type": "optional"}]})
    assert event.status_code == 201, event.text
    data = event.json()
    response = await track(app_host, data["id"], item_type="event",
                           regarding={"table": "opportunity",
                                      "id": "0b000000-0000-4000-8000-000000000001"})
    assert response.status == 200, response.body
    assert response.json()["status"]["key"] == f"ical:{data['iCalUId']}"
    rows = [r for r in crm_rows(app_host, "appointments")
            if r.get("globalobjectid") == data["iCalUId"]]
    assert len(rows) == 1
    masks = {(p["participationtypemask"], p.get("_partyid_value"))
             for p in rows[0]["appointment_activity_parties"]}
    assert (7, ALEX_SYSTEMUSER) in masks and (5, ANA) in masks
    assert (6, "1e000000-0000-4000-8000-000000000001") in masks
    again = await track(app_host, data["id"], item_type="event",
                        headers={"Idempotency-Key": "second"})
    assert again.json()["outcome"] == "existing"


async def test_untracked_from_outlook_stays_untracked_by_the_sync_cycles(
        app_host: FunctionHost) -> None:
    """After the owner untracks (the activity is deleted), neither participant's scheduled
    cycle tracks the message again, even with "All email messages"."""
    from tests.e2e.sync_support import ALEX as ALEX_MAILBOX
    from tests.e2e.sync_support import MEGAN as MEGAN_MAILBOX
    from tests.e2e.sync_support import cycle_at, enable, tick_and_drain

    ids = deliver(app_host, [ALEX, MEGAN], sender="ana@fabrikam.com")
    imid = ids[ALEX]["internetMessageId"]
    await enable(app_host, ALEX_MAILBOX, tracking_option="all")
    await enable(app_host, MEGAN_MAILBOX, tracking_option="all")
    await tick_and_drain(app_host)
    assert len(emails_with(app_host, imid)) == 1  # the cycles tracked it
    response = await call(app_host, "addin_untrack", "POST", "untrack",
                          body={"item_id": item_id(ids[ALEX])})
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "deleted"
    await cycle_at(13)  # both copies changed (category removed): delta returns them
    await cycle_at(26)
    assert emails_with(app_host, imid) == []
    for upn in (ALEX, MEGAN):
        assert CATEGORY not in message_by_imid(app_host, upn, imid)["categories"]
    # tracking it again on purpose works, and the cycles then keep it tracked
    assert (await track(app_host, item_id(ids[ALEX]))).status == 200
    await cycle_at(39)
    assert len(emails_with(app_host, imid)) == 1


async def test_track_and_the_sync_cycle_at_once_make_one_activity(
        app_host: FunctionHost) -> None:
    """The add-in and the scheduled cycle create an email with the same id (derived from
    its message id): whichever is second collides instead of duplicating it."""
    import asyncio

    from tests.e2e.sync_support import ALEX as ALEX_MAILBOX
    from tests.e2e.sync_support import enable, tick_and_drain

    ids = deliver(app_host, [ALEX], sender="ana@fabrikam.com")
    imid = ids[ALEX]["internetMessageId"]
    await enable(app_host, ALEX_MAILBOX, tracking_option="all")
    response, _ = await asyncio.gather(track(app_host, item_id(ids[ALEX])),
                                       tick_and_drain(app_host))
    assert response.status == 200, response.body
    assert response.json()["outcome"] in ("created", "existing")
    [activity] = emails_with(app_host, imid)
    assert response.json()["status"]["activity_id"] == activity["activityid"]
