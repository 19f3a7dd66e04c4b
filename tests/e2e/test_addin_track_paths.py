"""The track call's latency paths, end to end: the cold path's speculative read (and its
fallback), and answering before the bookkeeping writes (and what a worker dying in between
leaves for the scheduled cycle)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_addin_support import (
    ALEX,
    ALEX_OID,
    CATEGORY,
    MEGAN,
    MEGAN_OID,
    crm_rows,
    deliver,
    emails_with,
    item_id,
    message_by_imid,
    table_rows,
    token,
    track,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

TRACKED = "trackedmessages"  # TrackedMessageRepository.table_name


async def tracked_row(key: str) -> Any:
    from shared.runtime import get_runtime

    found = await (await get_runtime()).store.tracked.get(key)
    assert found is not None
    return found[0]


@pytest.fixture
def speculations(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each speculative read of the track path: {} once started, {"result": ...} once it
    returned (None: not usable); a speculation cancelled by a refusal has no result."""
    from shared.sync.intents import Executor

    seen: list[dict[str, Any]] = []
    original = Executor._speculate

    async def spy(self: Executor, item_type: str, item_id: str, found: Any) -> Any:
        entry: dict[str, Any] = {}
        seen.append(entry)
        entry["result"] = result = await original(self, item_type, item_id, found)
        return result

    monkeypatch.setattr(Executor, "_speculate", spy)
    return seen


@pytest.fixture
def reseeded(app_host: FunctionHost) -> Iterator[dict[str, Any]]:
    """A copy of the demo seed to change and load; the demo seed is loaded back afterwards
    (a loaded seed is what the sandbox resets to)."""
    from sandbox.world import read_seed

    yield copy.deepcopy(read_seed(None))
    app_host.sandbox.seed(read_seed(None))


async def test_cold_track_starts_round_two_from_the_apps_read(
        app_host: FunctionHost, speculations: list[dict[str, Any]]) -> None:
    ids = deliver(app_host, [ALEX], sender="ana@fabrikam.com")
    imid = ids[ALEX]["internetMessageId"]
    response = await track(app_host, item_id(ids[ALEX]))  # a new token: nothing cached
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "created"
    assert len(speculations) == 1 and speculations[0]["result"] is not None
    assert speculations[0]["result"].key == imid
    assert len(emails_with(app_host, imid)) == 1
    assert CATEGORY in message_by_imid(app_host, ALEX, imid)["categories"]


async def test_warm_track_does_not_speculate(app_host: FunctionHost,
                                             speculations: list[dict[str, Any]]) -> None:
    bearer = token(app_host)
    first, second = deliver(app_host, [ALEX]), deliver(app_host, [ALEX])
    for ids in (first, second):
        response = await app_host.http("addin_track", "POST", "track", token=bearer,
                                       body={"item_id": item_id(ids[ALEX])})
        assert response.status == 200, response.body
    assert len(speculations) == 1  # the second call's OBO token was cached


async def test_cold_track_falls_back_when_the_app_may_not_read_the_mailbox(
        app_host: FunctionHost, speculations: list[dict[str, Any]],
        reseeded: dict[str, Any]) -> None:
    seed = reseeded
    seed["apps"][0]["graph_roles"] = [r for r in seed["apps"][0]["graph_roles"]
                                      if not r.startswith("Mail.")]
    app_host.sandbox.seed(seed)
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    response = await track(app_host, item_id(ids[ALEX]))
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "created"
    assert speculations == [{"result": None}]  # the app may not read it: sequential path
    assert len(emails_with(app_host, imid)) == 1


async def test_speculation_writes_nothing_when_the_callers_own_access_is_refused(
        app_host: FunctionHost, speculations: list[dict[str, Any]],
        reseeded: dict[str, Any]) -> None:
    seed = reseeded
    next(u for u in seed["users"] if u["object_id"] == ALEX_OID)["disabled"] = True
    app_host.sandbox.seed(seed)  # the app still reads the mailbox; alex's OBO is refused
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    before = len(crm_rows(app_host, "emails"))
    response = await track(app_host, item_id(ids[ALEX]))
    assert response.status >= 400, response.body
    assert len(speculations) == 1  # the speculative read ran...
    assert await table_rows(app_host, "intents") == []  # ...and nothing was written
    assert await table_rows(app_host, TRACKED) == []
    assert len(crm_rows(app_host, "emails")) == before
    assert CATEGORY not in message_by_imid(app_host, ALEX, imid)["categories"]


async def test_item_of_another_mailbox_is_404_and_writes_nothing_on_the_cold_path(
        app_host: FunctionHost, speculations: list[dict[str, Any]]) -> None:
    from tests.e2e.test_addin_support import MEGAN

    ids = deliver(app_host, [MEGAN])
    before = len(crm_rows(app_host, "emails"))
    response = await track(app_host, item_id(ids[MEGAN]))  # alex asks for megan's item
    assert response.status == 404, response.body
    assert response.json()["field"] == "item_id"
    # the app finds no such item either, or the caller's 404 came first and cancelled its read
    assert len(speculations) == 1 and speculations[0].get("result") is None
    assert await table_rows(app_host, "intents") == []
    assert await table_rows(app_host, TRACKED) == []
    assert len(crm_rows(app_host, "emails")) == before


async def test_answer_is_recorded_for_the_next_reader(app_host: FunctionHost) -> None:
    """Answered before the bookkeeping writes: this process's next readers wait for them."""
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    response = await track(app_host, item_id(ids[ALEX]))
    assert response.status == 200, response.body
    intent_id = response.json()["intent_id"]
    view = await app_host.http("addin_get_intent", "GET", f"intents/{intent_id}",
                               token=token(app_host), route={"intent_id": intent_id})
    assert view.json()["state"] == "done"
    assert view.json()["result"] == response.json()
    status = await app_host.http("addin_status", "GET", "status", token=token(app_host),
                                 params={"internet_message_id": imid})
    assert status.json() == response.json()["status"]


async def test_worker_dying_after_the_answer_leaves_the_intent_to_the_cycle(
        app_host: FunctionHost, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import shared.sync.intents as intents
    from tests.e2e.sync_support import enable, tick_and_drain

    await enable(app_host, ALEX_OID, tracking_option="none")  # only the intent tracks
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    headers = {"Idempotency-Key": "dies-after-answer"}

    def dies(*args: Any) -> asyncio.Future[None]:
        """The worker is gone once the answer has left: no bookkeeping write happens."""
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.set_result(None)
        return gone

    monkeypatch.setattr(intents, "_start_bookkeeping", dies)
    answered = await track(app_host, item_id(ids[ALEX]), headers=headers)
    monkeypatch.undo()
    assert answered.status == 200, answered.body
    assert answered.json()["outcome"] == "created"
    [intent] = await table_rows(app_host, "intents")
    assert intent["state"] == "pending"  # the outcome was never recorded
    assert (await tracked_row(imid)).state == "pending"  # still claimed, not recorded
    assert len(emails_with(app_host, imid)) == 1

    await tick_and_drain(app_host)  # the mailbox's scheduled cycle: run_pending_intents
    [intent] = await table_rows(app_host, "intents")
    assert intent["state"] == "done"
    row = await tracked_row(imid)
    assert row.state == "tracked"
    assert row.activity_id == answered.json()["status"]["activity_id"]
    activities = emails_with(app_host, imid)
    assert len(activities) == 1  # found again, not created twice

    replay = await track(app_host, item_id(ids[ALEX]), headers=headers)
    assert replay.status == 200, replay.body
    body, first = replay.json(), answered.json()
    assert body["outcome"] == first["outcome"] == "created"
    assert body["intent_id"] == first["intent_id"]
    assert body["status"]["activity_id"] == first["status"]["activity_id"] \
        == activities[0]["activityid"]
    assert body["status"]["tracked"] is True


async def test_another_mailboxs_claim_does_not_hold_up_a_new_email(
        app_host: FunctionHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """An email's claim goes out with its create (its id, derived from the message id, stops
    duplicates): another participant's fresh claim is taken over, not waited for, and the
    take-over names this intent before the answer, so a replay after a lost worker still
    answers "created"."""
    import asyncio
    from datetime import UTC, datetime

    import shared.sync.intents as intents
    from shared.runtime import get_runtime
    from tests.e2e.sync_support import enable, tick_and_drain

    await enable(app_host, ALEX_OID, tracking_option="none")
    ids = deliver(app_host, [ALEX, MEGAN])
    imid = ids[ALEX]["internetMessageId"]
    store = (await get_runtime()).store
    other = await store.tracked.claim(imid, MEGAN_OID, datetime.now(UTC),
                                      ids[MEGAN]["id"], intent_id="megans-intent")
    assert other.won

    def dies(*args: Any) -> asyncio.Future[None]:
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.set_result(None)
        return gone

    headers = {"Idempotency-Key": "claimed-by-megan"}
    monkeypatch.setattr(intents, "_start_bookkeeping", dies)
    answered = await track(app_host, item_id(ids[ALEX]), headers=headers)
    monkeypatch.undo()
    assert answered.status == 200, answered.body  # not 202 "in progress"
    assert answered.json()["outcome"] == "created"
    row = await tracked_row(imid)
    assert row.claimed_by == ALEX_OID
    assert row.claim_intent == answered.json()["intent_id"]
    assert len(emails_with(app_host, imid)) == 1

    await tick_and_drain(app_host)  # the pending intent, carried out by the cycle
    replay = await track(app_host, item_id(ids[ALEX]), headers=headers)
    assert replay.json()["outcome"] == "created"
    assert replay.json()["status"]["activity_id"] == answered.json()["status"]["activity_id"]
    assert len(emails_with(app_host, imid)) == 1


@pytest.fixture
def held_read(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The caller's own read of the item held until the intent has been written (or 5 s):
    shows whether a cold track writes its intent alongside that read rather than after it.
    `refuse` makes the read then refuse, as Graph would a user it no longer lets in."""
    import asyncio

    from shared.store.intents import IntentRepository
    from shared.sync.intents import ActionRefused, Executor

    state: dict[str, Any] = {"written": asyncio.Event(), "early": None, "refuse": False}
    create_or_get, fetch_item = IntentRepository.create_or_get, Executor.fetch_item

    async def writing(self: IntentRepository, *args: Any, **kwargs: Any) -> Any:
        result = await create_or_get(self, *args, **kwargs)
        state["written"].set()
        return result

    async def reading(self: Executor, item_type: str, item_id: str) -> Any:
        item = await fetch_item(self, item_type, item_id)
        try:
            await asyncio.wait_for(state["written"].wait(), 5)
            state["early"] = True
        except TimeoutError:
            state["early"] = False
        if state["refuse"]:
            raise ActionRefused(403, "you may not act on this item", field="item_id")
        return item

    monkeypatch.setattr(IntentRepository, "create_or_get", writing)
    monkeypatch.setattr(Executor, "fetch_item", reading)
    return state


async def test_cold_track_writes_its_intent_alongside_the_callers_own_read(
        app_host: FunctionHost, held_read: dict[str, Any]) -> None:
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    response = await track(app_host, item_id(ids[ALEX]))  # a new token: the cold path
    assert response.status == 200, response.body
    assert held_read["early"] is True
    assert len(emails_with(app_host, imid)) == 1


async def test_a_refusal_after_the_early_intent_write_leaves_nothing(
        app_host: FunctionHost, held_read: dict[str, Any]) -> None:
    held_read["refuse"] = True
    ids = deliver(app_host, [ALEX])
    imid = ids[ALEX]["internetMessageId"]
    before = len(crm_rows(app_host, "emails"))
    response = await track(app_host, item_id(ids[ALEX]))
    assert response.status == 403, response.body
    assert response.json()["field"] == "item_id"
    assert held_read["early"] is True  # the intent was written, then taken back
    assert await table_rows(app_host, "intents") == []
    assert await table_rows(app_host, TRACKED) == []
    assert len(crm_rows(app_host, "emails")) == before
    assert CATEGORY not in message_by_imid(app_host, ALEX, imid)["categories"]
