"""The caller's own options (`GET`/`PATCH /api/me/options`): tracking option, automatic record
creation and folder rules, for the mailbox registered for them."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.api.addin import authorize_user, own_mailbox, user_actor
from shared.api.addin_models import FolderRuleView, MyOptions, RecordRefView, UpdateMyOptions
from shared.api.http import ApiRequest, ApiResponse
from shared.api.problem import ApiError, bad_request, refused
from shared.domain.folder_rules import first_problem, problem_of
from shared.domain.mailbox import Mailbox, MailboxRuleError
from shared.runtime import get_runtime
from shared.sync.intents import ActionRefused, Executor
from shared.sync.lifecycle import LifecycleError, MailboxService

# The domain names a rule's attributes in the stored shape; the add-in nests the regarding.
_ADDIN_NAMES = {".regarding_table": ".regarding.table", ".regarding_id": ".regarding.id"}
_NOT_REGISTERED = "your mailbox is not registered; ask an administrator"


def _addin_field(name: str) -> str:
    for stored, nested in _ADDIN_NAMES.items():
        if name.endswith(stored):
            return name.removesuffix(stored) + nested
    return name


def _options_view(mailbox: Mailbox, regarding_tables: list[str]) -> dict[str, Any]:
    """The options as stored; a rule stored before today's rules that they refuse is shown
    with `invalid` (why) rather than failing the read."""
    rules = []
    for rule in mailbox.folder_rules:
        problem = problem_of(rule, regarding_tables)
        regarding = RecordRefView(table=rule.regarding_table, id=rule.regarding_id) \
            if rule.regarding_table is not None and rule.regarding_id is not None else None
        rules.append(FolderRuleView(folder_id=rule.folder_id, folder_name=rule.folder_name,
                                    regarding=regarding,
                                    invalid=str(problem) if problem is not None else None))
    view = MyOptions(tracking_option=mailbox.tracking_option,
                     auto_create_records=mailbox.auto_create_records,
                     folder_rules=rules).model_dump(mode="json")
    for rule_view in view["folder_rules"]:
        if rule_view["invalid"] is None:
            del rule_view["invalid"]
    return view


async def get_my_options(request: ApiRequest) -> ApiResponse:
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    mailbox = await own_mailbox(runtime, caller)
    if mailbox is None:
        raise ApiError(404, "Not found", _NOT_REGISTERED)
    return ApiResponse(200, _options_view(mailbox, runtime.settings.regarding_tables))


async def update_my_options(request: ApiRequest) -> ApiResponse:
    runtime = await get_runtime()
    caller = await authorize_user(request, runtime)
    body = request.model(UpdateMyOptions)
    settings = runtime.settings
    rules = [r.rule() for r in body.folder_rules] if body.folder_rules is not None else None
    if rules is not None:  # the admin API's validation: refused before anything is read
        problem = first_problem(rules, settings.regarding_tables, settings.max_folder_rules)
        if problem is not None:
            raise bad_request(_addin_field(problem[0]), problem[1])
    if await own_mailbox(runtime, caller) is None:
        raise ApiError(404, "Not found", _NOT_REGISTERED)
    if body.folder_rules:
        # Every rule's record must be one the caller may read (their own CRM security).
        actor = await user_actor(runtime, caller)
        executor = Executor(settings, runtime.store, actor)
        refs = [r.regarding for r in body.folder_rules if r.regarding is not None]
        results = await asyncio.gather(
            *(executor.read_regarding(ref.model_dump()) for ref in refs),
            return_exceptions=True)
        for result in results:
            if isinstance(result, ActionRefused):
                raise ApiError(result.status, result.problem()["title"], result.detail,
                               field=result.field)
            if isinstance(result, BaseException):
                raise result
    service = MailboxService(settings, runtime.store, runtime.graph, runtime.dataverse)

    def change(mailbox: Mailbox) -> None:
        now = service.clock()
        if body.tracking_option is not None:
            mailbox.tracking_option = body.tracking_option
        if body.auto_create_records is not None:
            mailbox.auto_create_records = body.auto_create_records
        if rules is not None:
            mailbox.set_folder_rules(rules, now, settings.max_folder_rules,
                                     settings.regarding_tables)
        mailbox.updated_at = now

    try:
        mailbox = await service.mutate(caller.object_id, change)
    except LifecycleError as error:
        raise refused(error.status, f"{error.field}: {error.message}",
                      field=error.field) from None
    except MailboxRuleError as error:
        raise bad_request(_addin_field(error.field), error.message) from None
    return ApiResponse(200, _options_view(mailbox, settings.regarding_tables))


__all__ = ["get_my_options", "update_my_options"]
