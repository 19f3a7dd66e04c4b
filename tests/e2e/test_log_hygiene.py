"""Logs carry ids, never tokens, message bodies or email addresses: drive the admin API, a
sync cycle with faults and an add-in track with every logger captured, and look."""

from __future__ import annotations

import logging
import re

import pytest

from tests.fixtures.app import FunctionHost

pytestmark = pytest.mark.e2e

BODY = "Confidential body text 7731"
ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


async def test_logs_carry_no_tokens_bodies_or_addresses(
    app_host: FunctionHost, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.e2e.sync_support import ALEX, ALEX_UPN, deliver, enable, tick_and_drain
    from tests.e2e.test_addin_support import item_id, track

    caplog.set_level(logging.DEBUG)
    await enable(app_host, ALEX, tracking_option="all")
    delivered = deliver(app_host, to=[ALEX_UPN], **{"from": "ana@fabrikam.com"},
                        subject="Log hygiene", body=f"<p>{BODY}</p>")
    app_host.sandbox.faults({"service": "dataverse", "kind": "status", "status": 503,
                             "retry_after": 0, "count": 1})
    await tick_and_drain(app_host)
    second = deliver(app_host, to=[ALEX_UPN], **{"from": "bob@northwind.example"},
                     subject="Track me", body=f"<p>{BODY}</p>")
    response = await track(app_host, item_id(second[0]))
    assert response.status in (200, 202), response.body
    # a refused call logs too
    await app_host.http("admin_list_mailboxes", "GET", "admin/mailboxes", token="garbage")

    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert delivered[0]["internetMessageId"]
    assert BODY not in text
    assert not JWT.search(text), "a token reached the logs"
    leaked = sorted({m for m in ADDRESS.findall(text)})
    assert not leaked, f"addresses in logs: {leaked}"
