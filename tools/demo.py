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
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "alex@contoso.com"


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


async def run(once: bool, port: int) -> int:
    from tests.fixtures.azurite import start_azurite
    from tests.fixtures.sandbox import start_sandbox

    _line("== starting Azurite (storage emulator)")
    azurite = start_azurite()
    connection = azurite.handle.connection_string
    _line("== starting the sandbox (Entra ID, Graph, Dataverse emulators over HTTPS)")
    state = ROOT / ".sandbox"
    state.mkdir(exist_ok=True)
    sandbox = start_sandbox(state)
    host = None
    try:
        os.environ.update({k: v for k, v in sandbox.env.items()})
        os.environ.update({"AzureWebJobsStorage": connection, "ADMIN_ROLE": "Sync.Admin"})
        # binding placeholders (%SCHEDULER_SCHEDULE% ...) must be real app settings, as in Azure
        from shared.settings import Settings

        for name in ("scheduler_schedule", "sync_queue_name", "intent_queue_name"):
            field = Settings.model_fields[name]
            os.environ.setdefault(str(field.alias), str(field.default))
        import function_app
        from devhost.host import DevHost

        _line(f"== starting the local Functions host on http://127.0.0.1:{port}/api")
        host = DevHost(function_app.app, port=port, host_json_path=ROOT / "host.json",
                       timers=not once, queues=not once)
        await host.start()
        token = sandbox.user_token(ADMIN, roles=["Sync.Admin"])
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api", headers=headers,
                                     timeout=60) as api:
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
            await show_sync(host, sandbox, api, once)
    finally:
        if host is not None:
            await host.stop()
        from shared.runtime import reset_runtime

        await reset_runtime()
        sandbox.close()
        azurite.stop()
    return 0


async def show_sync(host: Any, sandbox: Any, api: httpx.AsyncClient, once: bool) -> None:
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
    for row in status_table(boxes):
        _line("   " + row)
    if once:
        return
    _line("== running on real schedules; Ctrl-C to stop. Deliver mail with:")
    _line(f"   curl -k -X POST {sandbox.base_url}/_sandbox/graph/deliver -H 'content-type: "
          "application/json' -d '{\"to\":[\"alex@contoso.com\"],\"from\":\"ana@fabrikam.com\","
          "\"subject\":\"Hi\",\"body\":\"x\"}'")
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        await host.wait_stopped()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="stop after one round")
    parser.add_argument("--port", type=int, default=7071)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    try:
        return asyncio.run(run(args.once, args.port))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
