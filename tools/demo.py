"""`make demo`: the whole product on one machine, against the sandbox.

Starts Azurite, the sandbox (emulated Entra ID, Graph, Dataverse over HTTPS) and the local
Functions host with function_app.py, then does what an admin would: imports the CRM's users as
mailboxes, approves and test-enables them, and shows them syncing mail as it arrives. It keeps
running (timers on their real schedules) until Ctrl-C, or stops after one round with --once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import httpx

from tools.dev import fail, options
from tools.stack import (
    ADMIN,
    ADMIN_ROLE,
    ROOT,
    Stack,
    StackError,
    start_stack,
    stop_on_signals,
    try_it_lines,
)

POLL_SECONDS = 5.0  # how often the running demo reads the admin API for finished cycles


def _line(text: str = "") -> None:
    print(text, flush=True)


def status_table(mailboxes: list[dict[str, Any]]) -> list[str]:
    rows = [f"{'mailbox':<22} {'approved':<9} {'enabled':<8} {'incoming':<9} {'outgoing':<9} "
            f"{'act':<8} {'last cycle':<10} {'moved':<6} {'next in':<7}"]
    now = time.time()
    for box in mailboxes:
        channels = box["channels"]
        incoming = channels.get("incoming", {})
        last = incoming.get("last_cycle_at") or "-"
        due = box.get("next_due_at")
        next_in = "-"
        if due:
            from datetime import datetime

            seconds = datetime.fromisoformat(due).timestamp() - now
            next_in = f"{max(0, seconds) / 60:.1f}m"
        rows.append(
            f"{box['display_name'][:21]:<22} {str(box['approved']):<9} {str(box['enabled']):<8} "
            f"{channels.get('incoming', {}).get('test_result', '-'):<9} "
            f"{channels.get('outgoing', {}).get('test_result', '-'):<9} "
            f"{channels.get('act', {}).get('test_result', '-'):<8} "
            f"{last[11:19] if last != '-' else '-':<10} {incoming.get('items_moved', 0):<6} "
            f"{next_in:<7}")
    return rows


async def run(args: argparse.Namespace) -> int:
    try:
        stack = await start_stack(port=args.port, sandbox_port=args.sandbox_port,
                                  state=args.state_dir.resolve(), what="a demo",
                                  timers=not args.once, queues=not args.once, say=_line)
    except StackError as error:
        return fail(error)
    try:
        stop_on_signals(stack.host)
        await enable_mailboxes(stack, args.once)
    finally:
        await stack.close()
    return 0


async def enable_mailboxes(stack: Stack, once: bool) -> None:
    """What an admin does first: import, approve, test and enable; then show the syncing."""
    host, sandbox = stack.host, stack.sandbox
    token = sandbox.user_token(ADMIN, roles=[ADMIN_ROLE])
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as api:
        _line("== importing the CRM's active users as mailboxes")
        imported = (await api.post("/admin/mailboxes/import",
                                   json={"all_active_users": True})).raise_for_status().json()
        ids = imported["created"] + imported["existing"]
        _line(f"   {len(ids)} mailboxes registered")
        for mailbox_id in ids:
            (await api.post(f"/admin/mailboxes/{mailbox_id}/approve")).raise_for_status()
            (await api.post(f"/admin/mailboxes/{mailbox_id}/test-enable")).raise_for_status()
        alex = next(b for b in (await api.get("/admin/mailboxes")).raise_for_status()
                    .json()["items"] if b["email"] == ADMIN)
        _line("== Alex tracks email from CRM contacts, accounts and leads; the others keep "
              "the default (responses to CRM email)")
        (await api.patch(f"/admin/mailboxes/{alex['mailbox_id']}",
                         json={"tracking_option": "from_leads_contacts_accounts"})
         ).raise_for_status()
        boxes = (await api.get("/admin/mailboxes")).raise_for_status().json()["items"]
        _line("== approved, tested and enabled:")
        for row in status_table(boxes):
            _line("   " + row)
        _line("== try the API from another shell (an admin token from the sandbox, then a call):")
        for command in try_it_lines(stack):
            _line("   " + command)
        cycles = CycleLog(boxes)
        await show_sync(host, sandbox, api, cycles)
        if once:
            return
        _line("== running on real schedules; one line per sync cycle; Ctrl-C to stop")
        while not host.stopping:
            boxes = (await api.get("/admin/mailboxes")).raise_for_status().json()["items"]
            for row in cycles.lines(boxes):
                _line("   " + row)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(host.wait_stopped(), timeout=POLL_SECONDS)


class CycleLog:
    """Turns the admin API's per-channel `last_cycle_at` into one line per finished cycle."""

    def __init__(self, boxes: list[dict[str, Any]]) -> None:
        self.seen = {b["mailbox_id"]: self._cycle(b) for b in boxes}

    @staticmethod
    def _cycle(box: dict[str, Any]) -> str | None:
        stamps = [c.get("last_cycle_at") for c in box["channels"].values()]
        return max((s for s in stamps if s), default=None)

    def lines(self, boxes: list[dict[str, Any]]) -> list[str]:
        out = []
        for box in boxes:
            cycle = self._cycle(box)
            if cycle is None or cycle == self.seen.get(box["mailbox_id"]):
                continue
            self.seen[box["mailbox_id"]] = cycle
            parts = [f"{name} {status.get('items_moved', 0)} moved"
                     + (" (failed)" if (status.get("last_error_at") or "") >= cycle else "")
                     for name, status in box["channels"].items()
                     if status.get("last_cycle_at") == cycle]
            out.append(f"cycle {cycle[11:19]} {box['display_name']}: {', '.join(parts)}")
        return out


async def show_sync(host: Any, sandbox: Any, api: httpx.AsyncClient, cycles: CycleLog) -> None:
    """Deliver mail, run the scheduler and the sync jobs, and show what reached the CRM."""
    _line("== new mail arrives: a contact writes to Alex and Megan; a stranger writes to Alex")
    sandbox.control.post("/_sandbox/graph/deliver", json={
        "to": ["alex@contoso.com", "megan@contoso.com"], "from": "ana@fabrikam.com",
        "fromName": "Ana Lopez", "subject": "Contract draft", "body": "<p>Draft attached.</p>",
    }).raise_for_status()
    sandbox.control.post("/_sandbox/graph/deliver", json={
        "to": ["alex@contoso.com"], "from": "someone@elsewhere.example",
        "subject": "Hello", "body": "<p>Hi</p>",
    }).raise_for_status()
    _line("== scheduler tick, then each mailbox's sync job")
    await host.run_timer_once("scheduler_tick")
    await host.drain_queues(timeout=120)
    emails = sandbox.control.get("/_sandbox/crm/emails").json()
    rows = emails.get("value", emails) if isinstance(emails, dict) else emails
    _line(f"== the CRM now holds {len(rows)} email activities:")
    for row in rows:
        _line(f"   {row.get('subject', '')[:40]:<42} status={row.get('statuscode')} "
              f"regarding={row.get('_regardingobjectid_value') or '-'}")
    for upn in ("alex@contoso.com", "megan@contoso.com"):
        items = sandbox.control.get(f"/_sandbox/graph/mailboxes/{upn}/messages",
                                    params={"folder": "inbox"}).json()
        items = items.get("value", items) if isinstance(items, dict) else items
        tagged = [m["subject"] for m in items if m.get("categories")]
        _line(f"   {upn.split('@')[0]}'s Inbox shows as tracked: {tagged or 'nothing'}")
    boxes = (await api.get("/admin/mailboxes")).raise_for_status().json()["items"]
    for row in cycles.lines(boxes):
        _line("   " + row)
    for row in status_table(boxes):
        _line("   " + row)


def main(argv: list[str] | None = None) -> int:
    parser = options("python -m tools.demo", __doc__)
    parser.add_argument("--once", action="store_true", help="stop after one round")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
