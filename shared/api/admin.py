"""Admin endpoints (`/api/admin/...`): every call needs a valid Entra token with ADMIN_ROLE."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable
from typing import TypeVar

import pydantic_core

from shared.api.admin_models import (
    DisableMailbox,
    ImportMailboxes,
    ListQuery,
    RegisterMailbox,
    UpdateMailbox,
    mailbox_view,
)
from shared.api.http import ApiRequest, ApiResponse
from shared.api.problem import bad_request, refused
from shared.domain.folder_rules import first_problem
from shared.domain.mailbox import Mailbox, MailboxRuleError
from shared.identity import Caller, require_role
from shared.runtime import Runtime, get_runtime
from shared.sync.lifecycle import LifecycleError, MailboxService

T = TypeVar("T")


async def authorize_admin(request: ApiRequest, runtime: Runtime) -> Caller:
    """Validate the bearer token fully, then require the admin app role."""
    caller = await runtime.validator.validate(request.bearer)
    require_role(caller, runtime.settings.admin_role)
    return caller


async def _service(request: ApiRequest) -> MailboxService:
    runtime = await get_runtime()
    await authorize_admin(request, runtime)
    return MailboxService(runtime.settings, runtime.store, runtime.graph, runtime.dataverse)


def _mailbox_id(request: ApiRequest) -> str:
    value = request.route.get("mailbox_id", "")
    if not value or len(value) > 64 or not all(c.isalnum() or c == "-" for c in value):
        raise bad_request("mailbox_id", "not a mailbox id")
    return value.lower()


async def _guard(call: Awaitable[T]) -> T:
    """Turn lifecycle and domain refusals into problem+json."""
    try:
        return await call
    except LifecycleError as error:
        raise refused(error.status, error.message if error.field in error.message else
                      f"{error.field}: {error.message}", field=error.field) from None
    except MailboxRuleError as error:
        raise refused(409, f"{error.field}: {error.message}", field=error.field) from None


def _one(service: MailboxService, mailbox: Mailbox, status: int = 200) -> ApiResponse:
    return ApiResponse(status, mailbox_view(mailbox, service.settings.regarding_tables))


def _check_continuation(token: str | None) -> None:
    """A continuation token is what `list` handed out: base64 of a flat JSON object of
    strings. Anything else (tampered, deeply nested, not base64) is a 400, not a crash."""
    if token is None:
        return
    try:
        decoded = pydantic_core.from_json(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        decoded = None
    if not isinstance(decoded, dict) or not all(
            isinstance(v, str | None) for v in decoded.values()):
        raise bad_request("query.continuation", "not a continuation token")


async def list_mailboxes(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    query = request.query_model(ListQuery)
    _check_continuation(query.continuation)
    try:
        items, token = await service.list(query.page_size, query.continuation)
    except ValueError:  # a well-formed token the table service does not know
        raise bad_request("query.continuation", "not a continuation token") from None
    tables = service.settings.regarding_tables
    return ApiResponse(200, {"items": [mailbox_view(m, tables) for m in items],
                             "continuation": token})


async def get_mailbox(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    mailbox_id = _mailbox_id(request)
    return _one(service, await _guard(service.get(mailbox_id)))


async def register_mailbox(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    body = request.model(RegisterMailbox)
    mailbox = await _guard(service.register(
        email=body.email,
        owner_object_id=str(body.owner_object_id) if body.owner_object_id else None,
        kind=body.kind, channels=body.channels.as_map(), tracking_option=body.tracking_option))
    return _one(service, mailbox, 201)


async def update_mailbox(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    mailbox_id = _mailbox_id(request)
    body = request.model(UpdateMailbox)
    rules = [r.rule() for r in body.folder_rules] if body.folder_rules is not None else None
    if rules is not None:  # refused before the mailbox is read: nothing is written
        problem = first_problem(rules, service.settings.regarding_tables,
                                service.settings.max_folder_rules)
        if problem is not None:
            raise bad_request(*problem)

    def change(mailbox: Mailbox) -> None:
        now = service.clock()
        if body.channels is not None:
            for channel, method in body.channels.as_map().items():
                mailbox.configure_channel(channel, method, now)
        if body.tracking_option is not None:
            mailbox.tracking_option = body.tracking_option
        if body.auto_create_records is not None:
            mailbox.auto_create_records = body.auto_create_records
        if "process_email_from" in body.model_fields_set:
            mailbox.process_email_from = body.process_email_from
        if rules is not None:
            mailbox.set_folder_rules(rules, now, service.settings.max_folder_rules,
                                     service.settings.regarding_tables)
        mailbox.updated_at = now

    return _one(service, await _guard(service.mutate(mailbox_id, change)))


async def approve_mailbox(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    mailbox_id = _mailbox_id(request)
    return _one(service, await _guard(service.approve(mailbox_id)))


async def test_enable_mailbox(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    mailbox_id = _mailbox_id(request)
    return _one(service, await _guard(service.test_and_enable(mailbox_id)))


async def disable_mailbox(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    mailbox_id = _mailbox_id(request)
    body = request.model(DisableMailbox) if request.body else DisableMailbox.model_validate({})
    return _one(service, await _guard(service.disable(mailbox_id, body.reason)))


async def import_mailboxes(request: ApiRequest) -> ApiResponse:
    service = await _service(request)
    body = request.model(ImportMailboxes)
    result = await _guard(service.import_from_crm(
        str(body.business_unit_id) if body.business_unit_id else None))
    return ApiResponse(200, {"created": result.created, "existing": result.existing,
                             "skipped": result.skipped})
