"""Outgoing email end to end: Pending Send -> sent through the owner's mailbox -> Sent, once."""

from __future__ import annotations

import pytest

from tests.e2e.sync_support import (
    ALEX,
    ALEX_SU,
    ALEX_UPN,
    ANA,
    MEGAN_UPN,
    OPPORTUNITY,
    context,
    crm,
    crm_create,
    cycle_at,
    deliver,
    emails_by_messageid,
    enable,
    messages,
    tick_and_drain,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e


def pending_send(host: FunctionHost, subject: str = "Proposal", to: str = "ana@fabrikam.com",
                 bind: str | None = f"/contacts({ANA})") -> dict:
    to_party = {"participationtypemask": 2, "addressused": to}
    if bind:
        to_party["partyid_contact@odata.bind"] = bind
    return crm_create(host, "emails", {
        "subject": subject, "description": "<p>Here it is</p>", "directioncode": True,
        "statecode": 1, "statuscode": 6, "owner": ALEX_UPN,
        "regardingobjectid_opportunity_email@odata.bind": f"/opportunities({OPPORTUNITY})",
        "email_activity_parties": [
            {"participationtypemask": 1, "partyid_systemuser@odata.bind":
             f"/systemusers({ALEX_SU})", "addressused": ALEX_UPN},
            to_party,
        ]})


def outbox(host: FunctionHost) -> list[dict]:
    return host.sandbox.control.get("/_sandbox/graph/outbox").json()["value"]


def email(host: FunctionHost, activity_id: str) -> dict:
    return next(e for e in crm(host, "emails") if e["activityid"] == activity_id)


async def test_pending_send_is_sent_once_and_marked_sent(app_host: FunctionHost) -> None:
    await enable(app_host, ALEX)
    row = pending_send(app_host)
    await tick_and_drain(app_host)
    sent = email(app_host, row["activityid"])
    assert sent["statuscode"] == 3
    assert sent["messageid"]
    assert [m["subject"] for m in outbox(app_host)] == ["Proposal"]
    copies = [m for m in messages(app_host, ALEX_UPN, "sentitems") if m["subject"] == "Proposal"]
    assert len(copies) == 1 and copies[0]["internetMessageId"] == sent["messageid"]
    # the reply comes back and correlates to the sent activity, closing the loop
    [reply] = deliver(app_host, to=[ALEX_UPN], subject="RE: Proposal",
                      inReplyTo=sent["messageid"], **{"from": "ana@fabrikam.com"})
    await cycle_at(13)
    [tracked] = emails_by_messageid(app_host, reply["internetMessageId"])
    assert tracked["_parentactivityid_value"] == row["activityid"]
    assert tracked["_regardingobjectid_value"] == OPPORTUNITY
    assert len(outbox(app_host)) == 1


@pytest.mark.parametrize("crash_at", ["outgoing:claimed", "outgoing:sent", "outgoing:marked"])
async def test_worker_killed_mid_send_never_sends_twice(app_host: FunctionHost,
                                                        crash_at: str) -> None:
    await enable(app_host, ALEX)
    row = pending_send(app_host)

    def crash(point: str) -> None:
        if point == crash_at:
            raise KeyboardInterrupt(point)  # not an Exception: nothing catches it

    ctx = await context()
    ctx.hooks.append(crash)
    with pytest.raises(KeyboardInterrupt):
        await cycle_at(0, ctx)
    ctx.hooks.clear()
    # the dead worker still holds the lease: a tick before it expires leaves the mailbox be
    before = await cycle_at(5, ctx)
    assert before == []
    # once the lease expires a later tick takes the mailbox over
    await cycle_at(ctx.settings.lease_seconds / 60 + 1, ctx)
    assert email(app_host, row["activityid"])["statuscode"] == 3
    assert len(outbox(app_host)) == 1


async def test_internal_recipient_copy_links_to_the_sent_activity(app_host: FunctionHost) -> None:
    from tests.e2e.sync_support import MEGAN

    await enable(app_host, ALEX)
    await enable(app_host, MEGAN, tracking_option="all")
    row = pending_send(app_host, subject="Internal note", to=MEGAN_UPN, bind=None)
    await tick_and_drain(app_host)
    await cycle_at(13)
    sent = email(app_host, row["activityid"])
    assert sent["statuscode"] == 3
    assert len(emails_by_messageid(app_host, sent["messageid"])) == 1


async def test_unsendable_email_is_failed_with_reason(app_host: FunctionHost) -> None:
    await enable(app_host, ALEX)
    row = crm_create(app_host, "emails", {
        "subject": "Nobody", "directioncode": True, "statecode": 1, "statuscode": 6,
        "owner": ALEX_UPN, "email_activity_parties": [
            {"participationtypemask": 1, "partyid_systemuser@odata.bind":
             f"/systemusers({ALEX_SU})", "addressused": ALEX_UPN}]})
    await tick_and_drain(app_host)
    assert email(app_host, row["activityid"])["statuscode"] == 8
    from tests.e2e.sync_support import mailbox_status

    status = await mailbox_status(app_host, ALEX)
    assert any(row["activityid"] in e["message"] for e in status["recent_errors"])
    assert outbox(app_host) == []


async def test_pending_send_of_a_mailbox_not_due_goes_out_at_the_next_tick(
        app_host: FunctionHost) -> None:
    """A quiet mailbox is due every 12 minutes at most; its Pending Send email must not wait
    for that: the tick's Pending Send scan brings the outgoing channel forward."""
    from tests.e2e.sync_support import mailbox_status

    await enable(app_host, ALEX)
    await tick_and_drain(app_host)  # the first cycle: the next one is minutes away
    before = await mailbox_status(app_host, ALEX)
    row = pending_send(app_host, subject="Right away")
    await cycle_at(1)  # within SYNC_INTERVAL_MIN_MINUTES of the last cycle: not yet
    assert email(app_host, row["activityid"])["statuscode"] == 6
    outcomes = await cycle_at(2.5)  # before the mailbox's own next cycle (5 minutes)
    assert [o.status for o in outcomes] == ["ran"]
    sent = email(app_host, row["activityid"])
    assert sent["statuscode"] == 3
    assert [m["subject"] for m in outbox(app_host)] == ["Right away"]
    after = await mailbox_status(app_host, ALEX)
    # only the outgoing channel ran early; incoming keeps its own cadence
    assert after["channels"]["incoming"]["last_cycle_at"] == \
        before["channels"]["incoming"]["last_cycle_at"]
    assert after["channels"]["outgoing"]["last_cycle_at"] != \
        before["channels"]["outgoing"]["last_cycle_at"]
