"""Azure Functions entry points (v2 programming model). Thin triggers only: each parses its
input, calls shared/, and maps the result; no logic lives here.

Settings are validated at import, so wrong app settings stop start-up with one line naming each.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.api import admin
from shared.api.http import respond
from shared.settings import get_settings

# httpx and azure-core log full request URLs at INFO; URLs may carry addresses (UPNs).
for _noisy in ("httpx", "azure.core.pipeline.policies.http_logging_policy", "msal"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

# A SettingsError's message is one line per bad setting: the host logs it as the reason the
# functions could not be indexed (devhost prints just those lines).
SETTINGS = get_settings()

MAX_BODY = SETTINGS.max_request_bytes

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# --- admin API -------------------------------------------------------------------------------

@app.route(route="admin/mailboxes", methods=["GET"])
async def admin_list_mailboxes(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.list_mailboxes, max_bytes=MAX_BODY)


@app.route(route="admin/mailboxes", methods=["POST"])
async def admin_register_mailbox(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.register_mailbox, max_bytes=MAX_BODY)


@app.route(route="admin/mailboxes/import", methods=["POST"])
async def admin_import_mailboxes(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.import_mailboxes, max_bytes=MAX_BODY)


@app.route(route="admin/mailboxes/{mailbox_id}", methods=["GET"])
async def admin_get_mailbox(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.get_mailbox, max_bytes=MAX_BODY)


@app.route(route="admin/mailboxes/{mailbox_id}", methods=["PATCH"])
async def admin_update_mailbox(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.update_mailbox, max_bytes=MAX_BODY)


@app.route(route="admin/mailboxes/{mailbox_id}/approve", methods=["POST"])
async def admin_approve_mailbox(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.approve_mailbox, max_bytes=MAX_BODY)


@app.route(route="admin/mailboxes/{mailbox_id}/test-enable", methods=["POST"])
async def admin_test_enable_mailbox(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.test_enable_mailbox, max_bytes=MAX_BODY)


@app.route(route="admin/mailboxes/{mailbox_id}/disable", methods=["POST"])
async def admin_disable_mailbox(req: func.HttpRequest) -> func.HttpResponse:
    return await respond(req, admin.disable_mailbox, max_bytes=MAX_BODY)


# --- sync: scheduler and per-mailbox jobs ------------------------------------------------------

@app.timer_trigger(schedule="%SCHEDULER_SCHEDULE%", arg_name="timer", run_on_startup=False,
                   use_monitor=True)
async def scheduler_tick(timer: func.TimerRequest) -> None:
    from shared.sync import entry

    await entry.tick(past_due=bool(timer.past_due))


@app.queue_trigger(arg_name="msg", queue_name="%SYNC_QUEUE_NAME%",
                   connection="AzureWebJobsStorage")
async def sync_mailbox(msg: func.QueueMessage) -> None:
    from shared.sync import entry

    await entry.handle_job(msg.get_body())


# --- add-in API ------------------------------------------------------------------------------

@app.route(route="track", methods=["POST"])
async def addin_track(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin

    return await respond(req, addin.track, max_bytes=MAX_BODY)


@app.route(route="regarding", methods=["POST"])
async def addin_set_regarding(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin

    return await respond(req, addin.set_regarding, max_bytes=MAX_BODY)


@app.route(route="untrack", methods=["POST"])
async def addin_untrack(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin

    return await respond(req, addin.untrack, max_bytes=MAX_BODY)


@app.route(route="status", methods=["GET"])
async def addin_status(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin_reads

    return await respond(req, addin_reads.tracking_status, max_bytes=MAX_BODY)


@app.route(route="should-track", methods=["POST"])
async def addin_should_track(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin_reads

    return await respond(req, addin_reads.should_track, max_bytes=MAX_BODY)


@app.route(route="lookup", methods=["POST"])
async def addin_lookup(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin_reads

    return await respond(req, addin_reads.lookup_records, max_bytes=MAX_BODY)


@app.route(route="me/options", methods=["GET"])
async def addin_get_options(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin_options

    return await respond(req, addin_options.get_my_options, max_bytes=MAX_BODY)


@app.route(route="me/options", methods=["PATCH"])
async def addin_update_options(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin_options

    return await respond(req, addin_options.update_my_options, max_bytes=MAX_BODY)


@app.route(route="intents/{intent_id}", methods=["GET"])
async def addin_get_intent(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import addin

    return await respond(req, addin.get_intent, max_bytes=MAX_BODY)


@app.route(route="openapi.json", methods=["GET"])
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import openapi

    return await respond(req, openapi.serve, max_bytes=MAX_BODY)


@app.queue_trigger(arg_name="msg", queue_name="%INTENT_QUEUE_NAME%",
                   connection="AzureWebJobsStorage")
async def intent_retry(msg: func.QueueMessage) -> None:
    from shared.sync import intents

    await intents.handle_message(msg.get_body())


@app.queue_trigger(arg_name="msg", queue_name="%INTENT_QUEUE_NAME%-poison",
                   connection="AzureWebJobsStorage")
async def intent_retry_poison(msg: func.QueueMessage) -> None:
    from shared.sync import intents

    await intents.handle_poison(msg.get_body())
