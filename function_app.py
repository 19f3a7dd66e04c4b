"""Azure Functions entry points (v2 programming model). Thin triggers only: each parses its
input, calls shared/, and maps the result; no logic lives here.

Settings are validated at import, so a wrong app setting stops start-up with one line naming it.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.api import admin
from shared.api.http import respond
from shared.settings import SettingsError, get_settings

try:
    SETTINGS = get_settings()
except SettingsError as error:
    logging.getLogger("sss").critical(str(error))
    raise

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
