"""Functions and actions the sync needs: WhoAmI and SendEmail.

WhoAmI answers for the effective user (the impersonated one under CallerObjectId). SendEmail
(reference/sendemail): `IssueSend: true` queues the email for delivery, Pending Send (statuscode
6, which the spec puts under statecode 1); `false` only marks it Sent (3). A missing
TrackingToken is generated, as SendEmailRequest documents; the response carries `Subject`.
"""

from __future__ import annotations

from typing import Any

from sandbox.dataverse import errors
from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.store import ORGANIZATION_ID, Caller, CrmStore, utc_now
from sandbox.dataverse.writes import touch

PENDING_SEND = 6
SENT = 3
DRAFT = 1
FAILED = 8


def who_am_i(store: CrmStore, caller: Caller, base: str) -> dict[str, Any]:
    return {
        "@odata.context": f"{base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
        "BusinessUnitId": store.business_unit_of(caller.systemuser_id),
        "UserId": caller.systemuser_id,
        "OrganizationId": ORGANIZATION_ID,
    }


def send_email(store: CrmStore, row: dict[str, Any], body: dict[str, Any],
               base: str) -> dict[str, Any]:
    """Queue (or mark as sent) an open outgoing email."""
    issue_send = body.get("IssueSend")
    if not isinstance(issue_send, bool):
        raise errors.bad_request("SendEmail requires the boolean parameter IssueSend.")
    token = body.get("TrackingToken")
    if token is not None and not isinstance(token, str):
        raise errors.bad_request("TrackingToken must be a string.")
    if row.get("statecode") != 0 or row.get("statuscode") not in (DRAFT, FAILED):
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             "The email cannot be sent: only an open email (Draft or Failed) "
                             "can be sent.")
    if row.get("directioncode") is False:
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             "An incoming email cannot be sent.")
    activity_id = str(row["activityid"])
    parties = [store.tables["activityparty"].rows[p] for p in store.parties_of(activity_id)]
    if not any(p.get("participationtypemask") in (2, 3, 4) for p in parties):
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             "The email must have at least one recipient before it can be sent.")
    token = token or row.get("trackingtoken") or store.next_tracking_token()
    changes: dict[str, Any] = {"trackingtoken": token, "statecode": 1,
                               "statuscode": PENDING_SEND if issue_send else SENT}
    if not issue_send:
        changes["senton"] = utc_now()
    touch(store, "email", activity_id, changes)
    subject = row.get("subject") or ""
    return {
        "@odata.context": f"{base}/$metadata#Microsoft.Dynamics.CRM.SendEmailResponse",
        "Subject": f"{subject} {token}".strip(),
    }
