"""GET /api/status: every participant sees the same tracked state, but what the regarding
record is, and its name, only when their own CRM security lets them read it (checked as the
caller, at each call)."""

from __future__ import annotations

import pytest

from tests.e2e.test_addin_support import (
    ALEX,
    ANA,
    BOB,
    MEGAN,
    call,
    deliver,
    item_id,
    status,
    track,
)
from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

SHARED = ("key", "tracked", "state", "activity_id", "activity_table", "tracked_by", "tracked_at")


def _state(view: dict[str, object]) -> dict[str, object]:
    return {k: view.get(k) for k in SHARED}


async def test_regarding_is_shown_only_to_those_who_may_read_it(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX, MEGAN])
    imid = ids[ALEX]["internetMessageId"]
    tracked = await track(app_host, item_id(ids[ALEX]),
                          regarding={"table": "contact", "id": ANA})  # alex's own contact
    assert tracked.status == 200, tracked.body

    alex, megan = await status(app_host, imid), await status(app_host, imid, upn=MEGAN)
    assert alex.status == megan.status == 200, (alex.body, megan.body)
    assert alex.json()["tracked"] is True
    assert _state(alex.json()) == _state(megan.json())  # the same state for every participant
    assert alex.json()["regarding"] == {"table": "contact", "id": ANA, "name": "Ana Lopez"}
    assert "regarding" not in megan.json()  # megan's CRM security hides Ana
    assert ANA not in megan.body.decode() and "Ana Lopez" not in megan.body.decode()

    # megan tracking her own copy learns nothing more from the answer
    hers = await track(app_host, item_id(ids[MEGAN]), upn=MEGAN)
    assert hers.status == 200 and hers.json()["outcome"] == "existing", hers.body
    assert "regarding" not in hers.json()["status"]

    # checked at each call, as the caller: once Ana is shared with megan she sees it
    shared = app_host.sandbox.control.post("/_sandbox/crm/shares", json={
        "table": "contact", "id": ANA, "users": [MEGAN]})
    assert shared.status_code == 200, shared.text
    again = await status(app_host, imid, upn=MEGAN)
    assert again.json()["regarding"] == {"table": "contact", "id": ANA, "name": "Ana Lopez"}


async def test_the_name_shown_is_what_the_callers_read_returned(app_host: FunctionHost) -> None:
    ids = deliver(app_host, [ALEX, MEGAN])
    imid = ids[ALEX]["internetMessageId"]
    response = await call(app_host, "addin_set_regarding", "POST", "regarding", upn=MEGAN,
                          body={"item_id": item_id(ids[MEGAN]),
                                "regarding": {"table": "contact", "id": BOB}})
    assert response.status == 200, response.body
    assert response.json()["status"]["regarding"]["name"] == "Bob Kelly"
    renamed = app_host.sandbox.control.patch(f"/_sandbox/crm/contacts/{BOB}",
                                             json={"firstname": "Robert"})
    assert renamed.status_code == 200, renamed.text
    for upn in (ALEX, MEGAN):  # alex reads the whole organisation; bob is megan's own
        view = (await status(app_host, imid, upn=upn)).json()
        assert view["regarding"] == {"table": "contact", "id": BOB, "name": "Robert Kelly"}
