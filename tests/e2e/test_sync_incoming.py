"""Incoming email end to end: scheduler timer -> sync queue -> sync_mailbox -> CRM + mailbox."""

from __future__ import annotations

import pytest

from tests.e2e.sync_support import (
    ALEX,
    ALEX_UPN,
    ANA,
    CATEGORY,
    copy_of,
    crm,
    deliver,
    emails_by_messageid,
    enable,
    mailbox_status,
    parties,
    tick_and_drain,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e


async def test_all_option_tracks_inbox_through_the_functions(app_host: FunctionHost) -> None:
    await enable(app_host, ALEX, tracking_option="all")
    jobs = await tick_and_drain(app_host)
    assert [j["mailbox_id"] for j in jobs] == [ALEX]

    inbox = {m["subject"]: m for m in copy_all(app_host)}
    quote = inbox["Renewal quote"]
    emails = emails_by_messageid(app_host, quote["internetMessageId"])
    assert len(emails) == 1
    email = emails[0]
    assert email["statuscode"] == 4 and email["directioncode"] is False
    sender = parties(email, 1)
    assert sender[0]["_partyid_value"] == ANA
    assert CATEGORY in copy_of(app_host, ALEX_UPN, quote["internetMessageId"])["categories"]

    status = await mailbox_status(app_host, ALEX)
    incoming = status["channels"]["incoming"]
    assert incoming["last_cycle_at"] and incoming["items_moved"] >= 2
    assert incoming["consecutive_failures"] == 0 and incoming["interval_minutes"]

    # a second tick right away: nothing is due, nothing is queued, nothing duplicated
    assert await tick_and_drain(app_host) == []
    assert len(emails_by_messageid(app_host, quote["internetMessageId"])) == 1
    assert crm(app_host, "emails")


def copy_all(host: FunctionHost) -> list[dict]:
    from tests.e2e.sync_support import messages

    return messages(host, ALEX_UPN, "inbox")


async def test_deliver_helper_works(app_host: FunctionHost) -> None:
    out = deliver(app_host, to=[ALEX_UPN], **{"from": "ana@fabrikam.com"}, subject="Hi")
    assert out and out[0]["internetMessageId"]


# --- tracking options ------------------------------------------------------------------------

@pytest.mark.parametrize(("option", "tracked"), [
    ("all", {"Renewal quote", "Weekly news", "Lead hello", "Stranger"}),
    ("responses_to_crm", set()),
    ("from_leads_contacts_accounts", {"Renewal quote", "Lead hello"}),
    ("from_email_enabled_records", {"Renewal quote", "Lead hello", "From Megan"}),
    ("none", set()),
])
async def test_tracking_options(app_host: FunctionHost, option: str, tracked: set[str]) -> None:
    from tests.e2e.sync_support import MEGAN_UPN

    deliver(app_host, to=[ALEX_UPN], subject="Lead hello", **{"from": "dan@tailspin.example"})
    deliver(app_host, to=[ALEX_UPN], subject="Stranger", **{"from": "who@unknown.example"})
    deliver(app_host, to=[ALEX_UPN], subject="From Megan", **{"from": MEGAN_UPN})
    await enable(app_host, ALEX, tracking_option=option)
    await tick_and_drain(app_host)
    subjects = {e["subject"] for e in crm(app_host, "emails") if e.get("statuscode") == 4}
    subjects.discard("Server-side synchronization: outgoing email test")
    if option == "all":
        tracked = tracked | {"From Megan"}
    assert subjects == tracked
    for message in copy_all(app_host):
        if message["subject"].startswith("Server-side synchronization"):
            continue  # test-and-enable's own probe message
        has = CATEGORY in (message.get("categories") or [])
        assert has == (message["subject"] in tracked), message["subject"]


async def test_enabling_does_not_import_history_or_the_test_message(
    app_host: FunctionHost
) -> None:
    status = await enable(app_host, ALEX, tracking_option="all", process_email_from=None)
    assert status["process_email_from"] is not None  # set when the mailbox was enabled
    fresh = deliver(app_host, to=[ALEX_UPN], **{"from": "ana@fabrikam.com"},
                    subject="After enabling")
    await tick_and_drain(app_host)
    subjects = {e["subject"] for e in crm(app_host, "emails")}
    assert "After enabling" in subjects
    assert "Renewal quote" not in subjects  # seeded history, received before enabling
    assert not any("outgoing email test" in s for s in subjects)  # the Test & Enable probe
    assert len(emails_by_messageid(app_host, fresh[0]["internetMessageId"])) == 1
