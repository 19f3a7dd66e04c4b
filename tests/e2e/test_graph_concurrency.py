"""Graph's 4 concurrent requests per mailbox, kept by the whole worker: an incoming cycle with
a backlog big enough for `$batch`, the outgoing send of the same job and add-in calls through
function_app.py, all on one mailbox at once, never meet a MailboxConcurrency 429."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.sync_support import (
    ALEX,
    ALEX_SU,
    ALEX_UPN,
    crm,
    crm_create,
    deliver,
    enable,
    tick_and_drain,
)
from tests.e2e.test_addin_support import item_id, track
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e


def pending_send(host: FunctionHost, subject: str) -> dict:
    return crm_create(host, "emails", {
        "subject": subject, "description": "<p>Here it is</p>", "directioncode": True,
        "statecode": 1, "statuscode": 6, "owner": ALEX_UPN,
        "email_activity_parties": [
            {"participationtypemask": 1, "partyid_systemuser@odata.bind":
             f"/systemusers({ALEX_SU})", "addressused": ALEX_UPN},
            {"participationtypemask": 2, "addressused": "ana@fabrikam.com"}]})


def outbox(host: FunctionHost) -> list[dict]:
    return list(host.sandbox.control.get("/_sandbox/graph/outbox").json()["value"])


async def test_engines_together_never_exceed_four_requests_at_one_mailbox(
        app_host: FunctionHost) -> None:
    sandbox = app_host.sandbox
    await enable(app_host, ALEX, tracking_option="all")
    # replies, so threading headers are fetched in $batch; every one is tagged in $batch
    made = sandbox.control.post("/_sandbox/graph/bulk-deliver", json={
        "to": [ALEX_UPN], "count": 60, "subject_pattern": "RE: Backlog {n}"})
    made.raise_for_status()
    for_addin = [deliver(app_host, to=[ALEX_UPN], subject=f"Add-in {n}",
                         **{"from": "ana@fabrikam.com"})[0] for n in range(40)]
    pending_send(app_host, "Sent while busy")
    # time at the service, so that requests of different engines overlap
    sandbox.faults({"service": "graph", "kind": "latency", "latency_ms": 25, "user": ALEX})
    sandbox.control.delete("/_sandbox/counters")

    cycle = asyncio.create_task(tick_and_drain(app_host))
    answers: list[int] = []

    async def addin_user(entries: list[dict]) -> None:
        for entry in entries:  # the add-in keeps working while the cycle runs
            if cycle.done():
                return
            answers.append((await track(app_host, item_id(entry))).status)

    await asyncio.gather(cycle, addin_user(for_addin[::2]), addin_user(for_addin[1::2]))

    seen = sandbox.counters()["graph_concurrency"]
    assert seen["throttled"] == {}  # no MailboxConcurrency 429, top-level or $batch part
    assert seen["max_in_flight"][ALEX] == 4  # the engines did use all four slots
    assert answers and set(answers) <= {200, 202}
    # nothing lost or doubled by the waiting
    received = Counter(e["subject"] for e in crm(app_host, "emails")
                       if e["subject"].startswith(("RE: Backlog", "Add-in")))
    assert all(n == 1 for n in received.values()), received
    assert {f"RE: Backlog {n}" for n in range(60)} <= set(received)
    assert [m["subject"] for m in outbox(app_host)].count("Sent while busy") == 1
