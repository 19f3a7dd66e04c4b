"""Correlation, party resolution, one activity per message across mailboxes, folder and
category tracking, automatic record creation."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.sync_support import (
    ALEX,
    ALEX_SU,
    ALEX_UPN,
    ANA,
    CATEGORY,
    DAN_LEAD,
    FABRIKAM,
    MEGAN,
    MEGAN_UPN,
    OPPORTUNITY,
    context,
    copy_of,
    crm,
    crm_create,
    cycle_at,
    deliver,
    emails_by_messageid,
    enable,
    messages,
    parties,
    tick_and_drain,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e


def _tracked_parent(host: FunctionHost, **extra: object) -> dict:
    return crm_create(host, "emails", {
        "subject": "Quote", "directioncode": True, "statecode": 1, "statuscode": 3,
        "messageid": "<parent-1@contoso.com>", "owner": ALEX_UPN,
        "regardingobjectid_opportunity_email@odata.bind": f"/opportunities({OPPORTUNITY})",
        **extra})


async def test_reply_correlates_by_in_reply_to_and_inherits_regarding(
        app_host: FunctionHost) -> None:
    parent = _tracked_parent(app_host)
    [reply] = deliver(app_host, to=[ALEX_UPN], subject="RE: Quote",
                      inReplyTo="<parent-1@contoso.com>", references="<parent-1@contoso.com>",
                      **{"from": "ana@fabrikam.com"})
    await enable(app_host, ALEX)  # default option: responses to CRM email only
    await tick_and_drain(app_host)
    [email] = emails_by_messageid(app_host, reply["internetMessageId"])
    assert email["_regardingobjectid_value"] == OPPORTUNITY
    assert email["_parentactivityid_value"] == parent["activityid"]
    assert email["correlationmethod"] == 3
    unrelated = [e for e in crm(app_host, "emails") if e["subject"] == "Renewal quote"]
    assert unrelated == []


async def test_reply_correlates_by_tracking_token(app_host: FunctionHost) -> None:
    _tracked_parent(app_host, trackingtoken="CRM:0001234", messageid="<other@contoso.com>")
    [reply] = deliver(app_host, to=[ALEX_UPN], subject="Your quote CRM:0001234",
                      **{"from": "ana@fabrikam.com"})
    await enable(app_host, ALEX)
    await tick_and_drain(app_host)
    [email] = emails_by_messageid(app_host, reply["internetMessageId"])
    assert email["correlationmethod"] == 4
    assert email["_regardingobjectid_value"] == OPPORTUNITY


async def test_reply_correlates_by_conversation(app_host: FunctionHost) -> None:
    [first] = deliver(app_host, to=[ALEX_UPN], subject="Project", **{"from": "ana@fabrikam.com"},
                      categories=[CATEGORY])
    await enable(app_host, ALEX, folder_rules=[])
    await tick_and_drain(app_host)
    [tracked] = emails_by_messageid(app_host, first["internetMessageId"])
    # a reply whose client dropped In-Reply-To but stays in the Exchange conversation
    [reply] = deliver(app_host, to=[ALEX_UPN], subject="RE: Project", inReplyTo=first[
        "internetMessageId"], **{"from": "ana@fabrikam.com"})
    ctx = await context()
    ctx.settings = ctx.settings.model_copy(update={"correlate_in_reply_to": False})
    await cycle_at(6, ctx)
    [email] = emails_by_messageid(app_host, reply["internetMessageId"])
    assert email["correlationmethod"] == 5
    assert email["_parentactivityid_value"] == tracked["activityid"]


async def test_party_resolution_order_and_plain_addresses(app_host: FunctionHost) -> None:
    [msg] = deliver(app_host, to=[ALEX_UPN], cc=["info@fabrikam.com", "dan@tailspin.example",
                                                 "nobody@nowhere.example"],
                    subject="Parties", **{"from": "ana@fabrikam.com"})
    await enable(app_host, ALEX, tracking_option="all")
    await tick_and_drain(app_host)
    [email] = emails_by_messageid(app_host, msg["internetMessageId"])
    assert parties(email, 1)[0]["_partyid_value"] == ANA
    assert parties(email, 2)[0]["_partyid_value"] == ALEX_SU
    cc = {p["addressused"]: p.get("_partyid_value") for p in parties(email, 3)}
    assert cc == {"info@fabrikam.com": FABRIKAM, "dan@tailspin.example": DAN_LEAD,
                  "nobody@nowhere.example": None}


async def test_one_activity_per_message_across_mailboxes_concurrently(
        app_host: FunctionHost) -> None:
    [a, m] = deliver(app_host, to=[ALEX_UPN, MEGAN_UPN], subject="To both",
                     internetMessageId="<both-1@fabrikam.com>", **{"from": "ana@fabrikam.com"})
    await enable(app_host, ALEX, tracking_option="all")
    await enable(app_host, MEGAN, tracking_option="all")
    from tests.e2e.sync_support import queued_jobs

    await app_host.timer("scheduler_tick")
    jobs = await queued_jobs()
    assert {j["mailbox_id"] for j in jobs} == {ALEX, MEGAN}
    await asyncio.gather(*(app_host.queue("sync_mailbox", j) for j in jobs))
    assert a["internetMessageId"] == m["internetMessageId"]
    assert len(emails_by_messageid(app_host, a["internetMessageId"])) == 1
    assert CATEGORY in copy_of(app_host, ALEX_UPN, a["internetMessageId"])["categories"]
    assert CATEGORY in copy_of(app_host, MEGAN_UPN, m["internetMessageId"])["categories"]


async def test_tracking_in_one_mailbox_tags_the_other_participants_copy(
        app_host: FunctionHost) -> None:
    [a, m] = deliver(app_host, to=[ALEX_UPN, MEGAN_UPN], subject="Shared",
                     internetMessageId="<shared-1@fabrikam.com>", **{"from": "ana@fabrikam.com"})
    await enable(app_host, MEGAN)  # responses only: megan would not track it herself
    await tick_and_drain(app_host)
    assert CATEGORY not in copy_of(app_host, MEGAN_UPN, m["internetMessageId"])["categories"]
    await enable(app_host, ALEX, tracking_option="all")
    await tick_and_drain(app_host)
    assert len(emails_by_messageid(app_host, a["internetMessageId"])) == 1
    assert CATEGORY in copy_of(app_host, MEGAN_UPN, m["internetMessageId"])["categories"]


async def test_folder_rule_tracks_moved_messages_regarding_the_record(
        app_host: FunctionHost) -> None:
    folders = app_host.sandbox.control.get(
        f"/_sandbox/graph/mailboxes/{ALEX_UPN}/folders").json()["value"]
    deals = next(f for f in folders if f["displayName"] == "Fabrikam deals")
    await enable(app_host, ALEX, tracking_option="none", folder_rules=[{
        "folder_id": deals["id"], "folder_name": "Fabrikam deals",
        "regarding_table": "account", "regarding_id": FABRIKAM}])
    await tick_and_drain(app_host)
    assert [e for e in crm(app_host, "emails") if e.get("statuscode") == 4] == []
    quote = next(m for m in messages(app_host, ALEX_UPN, "inbox")
                 if m["subject"] == "Renewal quote")
    moved = app_host.sandbox.control.post(
        f"/_sandbox/graph/mailboxes/{ALEX_UPN}/messages/{quote['id']}/move",
        json={"destinationId": deals["id"]})
    assert moved.status_code == 200, moved.text
    await cycle_at(13)
    [email] = emails_by_messageid(app_host, quote["internetMessageId"])
    assert email["_regardingobjectid_value"] == FABRIKAM


async def test_category_tracks_whatever_the_option(app_host: FunctionHost) -> None:
    await enable(app_host, ALEX, tracking_option="none")
    await tick_and_drain(app_host)
    news = next(m for m in messages(app_host, ALEX_UPN, "inbox") if m["subject"] == "Weekly news")
    assert emails_by_messageid(app_host, news["internetMessageId"]) == []
    response = app_host.sandbox.control.patch(
        f"/_sandbox/graph/mailboxes/{ALEX_UPN}/messages/{news['id']}",
        json={"categories": [CATEGORY]})
    assert response.status_code == 200, response.text
    await cycle_at(13)
    assert len(emails_by_messageid(app_host, news["internetMessageId"])) == 1


async def test_auto_create_contact_for_unknown_sender_not_own_domain(
        app_host: FunctionHost) -> None:
    [stranger] = deliver(app_host, to=[ALEX_UPN], subject="Hello", **{
        "from": "jo.newman@partner.example", "fromName": "Jo Newman"})
    [colleague] = deliver(app_host, to=[ALEX_UPN], subject="Internal", **{
        "from": "someone@contoso.com"})
    await enable(app_host, ALEX, tracking_option="all", auto_create_records="contact")
    await tick_and_drain(app_host)
    contacts = {c["emailaddress1"]: c for c in crm(app_host, "contacts")}
    assert "jo.newman@partner.example" in contacts
    assert contacts["jo.newman@partner.example"]["lastname"] == "Newman"
    assert "someone@contoso.com" not in contacts
    [email] = emails_by_messageid(app_host, stranger["internetMessageId"])
    assert parties(email, 1)[0]["_partyid_value"] == \
        contacts["jo.newman@partner.example"]["contactid"]
    [internal] = emails_by_messageid(app_host, colleague["internetMessageId"])
    assert parties(internal, 1)[0].get("_partyid_value") is None


async def test_both_enabled_participants_show_the_tracked_category(app_host: FunctionHost) -> None:
    """The demo's scenario: Alex tracks mail from CRM contacts, Megan keeps the default;
    both are synced in the same round; Megan's copy must show as tracked too."""
    from tests.e2e.sync_support import ALEX, MEGAN, enable

    await enable(app_host, ALEX, tracking_option="from_leads_contacts_accounts")
    await enable(app_host, MEGAN)
    sent = deliver(app_host, to=[ALEX_UPN, MEGAN_UPN], **{"from": "ana@fabrikam.com"},
                   subject="Both of us")
    await tick_and_drain(app_host)
    imid = sent[0]["internetMessageId"]
    assert len(emails_by_messageid(app_host, imid)) == 1
    assert CATEGORY in copy_of(app_host, ALEX_UPN, imid)["categories"]
    assert CATEGORY in copy_of(app_host, MEGAN_UPN, imid)["categories"]


def _set_categories(host: FunctionHost, upn: str, item_id: str, categories: list[str]) -> None:
    response = host.sandbox.control.patch(
        f"/_sandbox/graph/mailboxes/{upn}/messages/{item_id}", json={"categories": categories})
    assert response.status_code == 200, response.text


async def test_removing_the_category_untracks_the_copy_and_keeps_the_activity(
        app_host: FunctionHost) -> None:
    """Dynamics: removing the tracked category untracks without deleting; the cycle must
    not track it again by itself, and putting the category back tracks it again."""
    [sent] = deliver(app_host, to=[ALEX_UPN], subject="Keep me out",
                     **{"from": "ana@fabrikam.com"})
    imid = sent["internetMessageId"]
    await enable(app_host, ALEX, tracking_option="all")
    await tick_and_drain(app_host)
    [email] = emails_by_messageid(app_host, imid)
    ctx = await context()
    row, _ = await ctx.store.tracked.get(imid)
    assert set(row.copies) == {ALEX}

    _set_categories(app_host, ALEX_UPN, copy_of(app_host, ALEX_UPN, imid)["id"], [])
    [outcome] = await cycle_at(13, ctx)
    assert all(c.error is None for c in outcome.channels.values())
    assert emails_by_messageid(app_host, imid) == [email]  # the activity stays
    row, _ = await ctx.store.tracked.get(imid)
    assert row.state == "tracked" and ALEX not in row.copies
    await cycle_at(26, ctx)  # and the next cycle leaves the copy alone
    assert CATEGORY not in copy_of(app_host, ALEX_UPN, imid)["categories"]
    assert len(emails_by_messageid(app_host, imid)) == 1

    _set_categories(app_host, ALEX_UPN, copy_of(app_host, ALEX_UPN, imid)["id"], [CATEGORY])
    await cycle_at(39, ctx)
    row, _ = await ctx.store.tracked.get(imid)
    assert ALEX in row.copies
    assert await ctx.store.untracked.keys(ALEX) == set()
    assert len(emails_by_messageid(app_host, imid)) == 1


async def test_echo_of_our_own_tag_costs_no_table_read(app_host: FunctionHost) -> None:
    """The category we put on copies comes back in the next delta: that round is settled
    from the page's one Dataverse query and a batched merge, with no read per message."""
    sent = [deliver(app_host, to=[ALEX_UPN], subject=f"Batch {i}",
                    **{"from": "ana@fabrikam.com"})[0] for i in range(60)]
    await enable(app_host, ALEX, tracking_option="all")
    await tick_and_drain(app_host)
    from shared.store.tracked import BUCKETS

    ctx = await context()
    counter = ctx.store.counter

    async def storage_requests_of_a_cycle(minutes: int) -> int:
        before = counter.count
        [outcome] = await cycle_at(minutes, ctx)
        assert all(c.error is None for c in outcome.channels.values())
        return counter.count - before

    echo = await storage_requests_of_a_cycle(13)  # 60 copies come back with the category
    idle = await storage_requests_of_a_cycle(26)  # nothing new
    # one merge transaction per bucket at most, and the one query of untrack markers
    assert echo - idle <= BUCKETS + 1, (echo, idle)
    for message in sent:
        assert len(emails_by_messageid(app_host, message["internetMessageId"])) == 1
