"""Pure parts of the add-in path: keys, bodies, party lookups, back-off, request models."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from pydantic import ValidationError

from shared.api.addin import idempotency_key
from shared.api.addin_models import ShouldTrackRequest, StatusQuery, TrackRequest, UpdateMyOptions
from shared.api.http import ApiRequest
from shared.api.problem import ApiError
from shared.identity import Caller
from shared.store.tracked import Regarding, TrackedMessage
from shared.sync.batching import query_path
from shared.sync.intents import (
    ActionRefused,
    build_appointment,
    build_email,
    candidates_by_address,
    item_key,
    party_operations,
    resolve_all,
    retry_delay,
    status_view,
)

MESSAGE = {
    "id": "AAMk1=", "internetMessageId": "<abc@fabrikam.example>", "subject": "Quote",
    "from": {"emailAddress": {"address": "Ana@Fabrikam.com", "name": "Ana"}},
    "toRecipients": [{"emailAddress": {"address": "alex@contoso.com"}}],
    "ccRecipients": [{"emailAddress": {"address": "dan@tailspin.example"}}],
    "receivedDateTime": "2026-01-01T10:00:00Z", "body": {"contentType": "html",
                                                          "content": "<p>x</p>"},
}
CALLER = Caller(object_id="oid-1", tenant_id="t", scopes=frozenset({"access_as_user"}))


def _request(headers: dict[str, str] | None = None) -> ApiRequest:
    return ApiRequest("POST", "/api/track", {}, {}, {k.lower(): v for k, v in
                                                     (headers or {}).items()}, b"{}")


def test_item_keys() -> None:
    assert item_key("message", MESSAGE) == "<abc@fabrikam.example>"
    assert item_key("event", {"iCalUId": "040000"}) == "ical:040000"
    with pytest.raises(ActionRefused) as refused:
        item_key("message", {"id": "x"})
    assert refused.value.status == 409


def test_derived_idempotency_key_depends_on_user_item_action_and_regarding() -> None:
    body = TrackRequest(item_id="AAMk1=")
    key = idempotency_key(_request(), CALLER, "track", body)
    assert key == idempotency_key(_request(), CALLER, "track", TrackRequest(item_id="AAMk1="))
    assert key != idempotency_key(_request(), CALLER, "untrack", body)
    ana = "c0000000-0000-4000-8000-000000000001"
    other = TrackRequest(item_id="AAMk1=", regarding={"table": "contact", "id": ana})
    assert key != idempotency_key(_request(), CALLER, "track", other)
    assert idempotency_key(_request({"Idempotency-Key": "k-1"}), CALLER, "track", body) == "k-1"
    with pytest.raises(ApiError) as error:
        idempotency_key(_request({"Idempotency-Key": "a b"}), CALLER, "track", body)
    assert error.value.field == "Idempotency-Key"


def test_email_body_matches_the_incoming_engine_shape() -> None:
    resolutions = resolve_all(candidates_by_address(
        {"contact": [{"contactid": "c1", "fullname": "Ana", "emailaddress1": "ana@fabrikam.com",
                      "statecode": 0}],
         "systemuser": [{"systemuserid": "u1", "fullname": "Alex",
                         "internalemailaddress": "alex@contoso.com", "isdisabled": False}]},
        ["ana@fabrikam.com", "alex@contoso.com", "dan@tailspin.example"]), None)
    body = build_email(MESSAGE, Regarding(table="account", id="a1", name="F"), resolutions)
    assert body["messageid"] == "<abc@fabrikam.example>"
    assert body["statecode"] == 1 and body["statuscode"] == 4 and body["directioncode"] is False
    assert body["regardingobjectid_account_email@odata.bind"] == "/accounts(a1)"
    parties = body["email_activity_parties"]
    assert parties[0] == {"participationtypemask": 1, "addressused": "ana@fabrikam.com",
                          "partyid_contact@odata.bind": "/contacts(c1)"}
    assert parties[1]["partyid_systemuser@odata.bind"] == "/systemusers(u1)"
    assert parties[2] == {"participationtypemask": 3, "addressused": "dan@tailspin.example"}


def test_appointment_parties_use_organizer_required_optional_masks() -> None:
    event = {"iCalUId": "uid", "subject": "Call",
             "start": {"dateTime": "2030-01-10T10:00:00.0000000", "timeZone": "UTC"},
             "end": {"dateTime": "2030-01-10T11:00:00.0000000", "timeZone": "UTC"},
             "organizer": {"emailAddress": {"address": "alex@contoso.com"}},
             "attendees": [{"type": "required", "emailAddress": {"address": "a@x.com"}},
                           {"type": "optional", "emailAddress": {"address": "b@x.com"}}]}
    body = build_appointment(event, None, {})
    assert [p["participationtypemask"] for p in body["appointment_activity_parties"]] == [7, 5, 6]
    assert body["scheduledstart"] == "2030-01-10T10:00:00Z"
    assert body["globalobjectid"] == "uid"


def test_party_lookups_one_query_per_table_with_in() -> None:
    ops = party_operations(["b@x.com", "a@x.com", "a@x.com"])
    assert [table for table, _ in ops] == ["systemuser", "contact", "account", "lead"]
    path = ops[1][1].path
    assert path.startswith("contacts?$select=contactid,fullname,")
    assert "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=" \
           "['a@x.com','b@x.com'])" in unquote(path)
    assert query_path("emails", filter="a eq 'b'", top=1) == "emails?$filter=a%20eq%20'b'&$top=1"


def test_status_view_is_the_same_for_everyone() -> None:
    row = TrackedMessage(internet_message_id="<m@x>", state="tracked", activity_id="e1",
                         regarding=Regarding(table="contact", id="c1", name="Ana"),
                         tracked_by="oid-1", tracked_at=datetime(2026, 1, 1, tzinfo=UTC),
                         copies={"oid-1": "a", "oid-2": "b"})
    view = status_view("<m@x>", row)
    assert view["tracked"] is True and view["activity_table"] == "email"
    assert "copies" not in view
    assert status_view("<m@x>", None) == {"key": "<m@x>", "tracked": False,
                                          "state": "not_tracked"}


def test_retry_delay_doubles() -> None:
    settings = SimpleNamespace(intent_retry_base_seconds=30)
    assert [retry_delay(settings, n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]  # type: ignore[arg-type]


def test_models_refuse_extra_fields_and_ambiguity() -> None:
    with pytest.raises(ValidationError):
        ShouldTrackRequest.model_validate({"sender": "a@b.com", "body": "x"})
    with pytest.raises(ValidationError):
        StatusQuery.model_validate({"internet_message_id": "<a@b>", "ical_uid": "x"})
    with pytest.raises(ValidationError):
        StatusQuery.model_validate({})
    with pytest.raises(ValidationError):
        UpdateMyOptions.model_validate({})
    with pytest.raises(ValidationError):
        TrackRequest.model_validate({"item_id": "x y"})
