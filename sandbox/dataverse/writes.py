"""Create and update semantics: payload validation, lookups by `@odata.bind`, party deep insert.

Mirrors create-entity-web-api / update-delete-entities-using-web-api: unknown properties and
wrong types are 400s, option values must exist, statuscode must belong to statecode, a lookup is
written through its navigation property (`regardingobjectid_contact_email@odata.bind`) and read
back as `_regardingobjectid_value`, and a party list is deep-inserted through
`email_activity_parties`. Secured columns need the caller's field permission.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sandbox.dataverse import errors
from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.metadata import ACTIVITIES, Attribute, Entity
from sandbox.dataverse.odata_filter import parse_datetime
from sandbox.dataverse.store import Caller, CrmStore, new_id, utc_now

API_PREFIX = "/api/data/v9.2/"
_BIND_RE = re.compile(r"(?:^|/)(\w+)\(([0-9a-fA-F-]{36})\)$")
READ_ONLY = {"createdon", "modifiedon", "versionnumber", "_createdby_value", "_modifiedby_value",
             "_createdonbehalfby_value", "_modifiedonbehalfby_value", "activitytypecode",
             "_owninguser_value", "_owningbusinessunit_value", "_owningteam_value"}
COMPUTED_NAMES = ("contact", "lead", "systemuser")
CDM_TARGETS = {"user": "systemuser"}


def parse_bind(store: CrmStore, value: Any) -> tuple[str, str]:
    """`/contacts(<id>)`, `contacts(<id>)` or an absolute URL -> (logical name, id)."""
    if not isinstance(value, str):
        raise errors.bad_request("An @odata.bind value must be a string entity reference.")
    text = value.split("?", 1)[0].rstrip("/")
    match = _BIND_RE.search(text)
    if match is None or match.group(1) not in store.md.by_set:
        raise errors.bad_request(f"The entity reference '{value}' is not valid.",
                                 errors.UNKNOWN_PROPERTY)
    return store.md.by_set[match.group(1)].logical, match.group(2).lower()


def resolve_nav(entity: Entity, nav: str) -> tuple[Attribute, str | None] | None:
    """Single-valued navigation name -> (lookup attribute, target table it fixes, if any).

    Accepts `ownerid`, `parentactivityid`, `regardingobjectid_contact_email`, `partyid_contact`,
    `emailsender_systemuser`, `parentcustomerid_account` ...
    """
    best: tuple[Attribute, str | None] | None = None
    for attr in entity.attributes.values():
        if not attr.lookup:
            continue
        if nav.lower() == attr.logical:
            return attr, None
        prefix = attr.logical + "_"
        if nav.lower().startswith(prefix):
            rest = nav[len(prefix):].lower()
            suffix = "_" + entity.logical
            table = rest[: -len(suffix)] if rest.endswith(suffix) and rest != entity.logical \
                else rest
            if best is None or len(attr.logical) > len(best[0].logical):
                best = (attr, table)
    return best


def _table_of(store: CrmStore, attr: Attribute, value: str | None) -> str:
    """The table a bare lookup id (seed shorthand) points at: the first that holds it."""
    candidates = [CDM_TARGETS.get(t, t) for t in attr.targets] or ["systemuser"]
    for logical in [*candidates, *store.tables]:
        if value and logical in store.tables and store.row(logical, value) is not None:
            return logical
    return candidates[0]


def _check_value(entity: Entity, attr: Attribute, value: Any) -> Any:
    """Validate one JSON value against its column; return the stored form."""
    if value is None:
        return None
    edm = attr.edm
    bad = DataverseError(400, "0x80048d19", f"Cannot convert the literal '{value}' to the "
                         f"expected type '{edm}'.")
    if edm == "Edm.String":
        if not isinstance(value, str):
            raise bad
        if attr.max_length is not None and len(value) > attr.max_length:
            raise DataverseError(400, errors.MAX_LENGTH,
                                 f"A validation error occurred.  The length of the "
                                 f"'{attr.logical}' attribute of the '{entity.logical}' entity "
                                 f"exceeded the maximum allowed length of '{attr.max_length}'.")
        return value
    if edm in ("Edm.Int32", "Edm.Int64"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if attr.options is not None and value not in attr.options:
            raise DataverseError(400, errors.PICKLIST_OUT_OF_RANGE,
                                 f"A validation error occurred. The value {value} of "
                                 f"'{attr.logical}' on record of type '{entity.logical}' is "
                                 f"outside the valid range.")
        return value
    if edm in ("Edm.Decimal", "Edm.Double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return value
    if edm == "Edm.Boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if edm == "Edm.Guid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError as error:
            raise bad from error
    if edm in ("Edm.DateTimeOffset", "Edm.Date"):
        if not isinstance(value, str):
            raise bad
        try:
            return parse_datetime(value).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError as error:
            raise bad from error
    return value


def _unknown_payload_property(name: str, entity: Entity) -> DataverseError:
    return DataverseError(400, errors.UNKNOWN_PROPERTY,
                          f"The property '{name}' does not exist on type "
                          f"'Microsoft.Dynamics.CRM.{entity.logical}'. Make sure to only use "
                          f"property names that are defined by the type or mark the type as "
                          f"open type.")


def _apply(store: CrmStore, entity: Entity, row: dict[str, Any], payload: dict[str, Any],
           caller: Caller, *, creating: bool, system: bool) -> tuple[set[str], list[Any] | None]:
    """Write payload into row; return the columns touched and any party list given."""
    touched: set[str] = set()
    parties: list[Any] | None = None
    lookups = row.setdefault("@lookup", {})
    for key, value in payload.items():
        if key.endswith("@odata.bind"):
            nav = key[: -len("@odata.bind")]
            resolved = resolve_nav(entity, nav)
            if resolved is None:
                raise DataverseError(400, errors.UNKNOWN_PROPERTY,
                                     f"An undeclared property '{nav}' which only has property "
                                     f"annotations in the payload but no property value was "
                                     f"found in the payload. In OData, only declared navigation "
                                     f"properties and declared named streams can be represented "
                                     f"as properties without values.")
            attr, fixed = resolved
            if value is None:
                row.pop(attr.column, None)
                lookups.pop(attr.column, None)
                touched.add(attr.column)
                continue
            target, target_id = parse_bind(store, value)
            if fixed is not None and fixed != target:
                raise errors.bad_request(f"The navigation property '{nav}' refers to "
                                         f"'{fixed}', but the reference is to '{target}'.")
            if store.row(target, target_id) is None:
                raise errors.not_found(target, target_id)
            row[attr.column] = target_id
            lookups[attr.column] = target
            touched.add(attr.column)
            continue
        if key.startswith("@") or "@" in key:
            continue  # instance annotations (@odata.type, @odata.etag, ...) are ignored
        if key == entity.party_nav or (system and key == "parties"):
            if not isinstance(value, list):
                raise errors.bad_request(f"'{key}' must be an array of activityparty records.")
            parties = value
            continue
        attr = entity.columns.get(key)
        if attr is None:
            if system and key in entity.attributes:  # seeds may give a lookup by logical name
                attr = entity.attributes[key]
            else:
                raise _unknown_payload_property(key, entity)
        if attr.lookup:
            if not system:
                raise DataverseError(400, "0x80048d19",
                                     "CRM do not support direct update of Entity Reference "
                                     "properties, Use Navigation properties instead.")
            row[attr.column] = str(value).lower() if value else None
            lookups[attr.column] = payload.get(
                f"{attr.column}@Microsoft.Dynamics.CRM.lookuplogicalname") or _table_of(
                store, attr, row[attr.column])
            touched.add(attr.column)
            continue
        if attr.column in READ_ONLY and not system:
            continue  # Dataverse ignores writes to system-managed columns
        if attr.column == entity.primary_key and not creating:
            if value is not None and str(value).lower() != row.get(entity.primary_key):
                raise errors.bad_request("The primary key of a record cannot be changed.")
            continue
        row[attr.column] = _check_value(entity, attr, value)
        touched.add(attr.column)
    return touched, parties


def _check_field_security(store: CrmStore, entity: Entity, touched: set[str], caller: Caller,
                          *, creating: bool) -> None:
    for column in touched & store.secured.get(entity.logical, set()):
        if not caller.field_allowed(entity.logical, column):
            if creating:
                raise DataverseError(403, errors.FIELD_CREATE,
                                     f"The user does not have create permissions to a secured "
                                     f"field '{column}' of '{entity.logical}'. The requested "
                                     f"operation could not be completed.")
            raise DataverseError(403, errors.FIELD_UPDATE,
                                 f"The user doesn't have AttributePrivilegeUpdate and not "
                                 f"granted shared access for a secured attribute '{column}' "
                                 f"of '{entity.logical}' during update operation.")


def _state_status(entity: Entity, row: dict[str, Any], touched: set[str],
                  *, creating: bool) -> None:
    """Default and cross-check statecode/statuscode from the spec's option labels."""
    if not entity.status_state:
        return
    state, status = row.get("statecode"), row.get("statuscode")
    if "statuscode" in touched and status is not None and "statecode" not in touched:
        row["statecode"] = entity.status_state.get(status, state)
    elif "statecode" in touched and "statuscode" not in touched and state is not None:
        row["statuscode"] = entity.default_status.get(state)
    elif creating:
        if state is None:
            row["statecode"] = 0
        if row.get("statuscode") is None:
            row["statuscode"] = entity.default_status.get(row["statecode"])
    state, status = row.get("statecode"), row.get("statuscode")
    if status is not None and entity.status_state.get(status) != state:
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             f"{status} is not a valid status code for state code "
                             f"{entity.logical}State.{state} on {entity.logical}.")


def _computed(entity: Entity, row: dict[str, Any], touched: set[str]) -> None:
    if entity.logical in COMPUTED_NAMES and touched & {"firstname", "lastname"}:
        parts = [row.get("firstname"), row.get("lastname")]
        row["fullname"] = " ".join(p for p in parts if p) or None


def _party_rows(store: CrmStore, activity: Entity, activity_id: str, owner: str | None,
                parties: list[Any]) -> list[dict[str, Any]]:
    """Validate a deep-inserted party list into activityparty rows."""
    party_entity = store.md.by_logical["activityparty"]
    rows: list[dict[str, Any]] = []
    for order, raw in enumerate(parties):
        if not isinstance(raw, dict):
            raise errors.bad_request("Each activity party must be a JSON object.")
        party: dict[str, Any] = {"activitypartyid": new_id(), "@order": order}
        payload = {k: v for k, v in raw.items()
                   if not k.startswith("activityid") and k != "activitypartyid"}
        _apply(store, party_entity, party, payload, store.app_caller(), creating=True,
               system=False)
        if party.get("participationtypemask") is None:
            raise errors.bad_request("participationtypemask is required on an activity party.")
        party["activitypartyid"] = str(raw.get("activitypartyid") or party["activitypartyid"])
        party["_activityid_value"] = activity_id
        party["@lookup"]["_activityid_value"] = activity.logical
        if owner:
            party["_ownerid_value"] = owner
            party["@lookup"]["_ownerid_value"] = "systemuser"
            party["owneridtype"] = "systemuser"
        target = party["@lookup"].get("_partyid_value")
        if target:
            party["partyobjecttypecode"] = target
            if not party.get("addressused"):
                bound = store.row(target, party["_partyid_value"]) or {}
                party["addressused"] = (bound.get("emailaddress1") or
                                        bound.get("internalemailaddress") or
                                        bound.get("emailaddress"))
        elif not party.get("addressused"):
            raise errors.bad_request("An activity party needs a partyid binding or addressused.")
        party["ispartydeleted"] = False
        rows.append(store.stamp("activityparty", party))
    return rows


def _replace_parties(store: CrmStore, entity: Entity, activity_id: str, owner: str | None,
                     parties: list[Any]) -> None:
    rows = _party_rows(store, entity, activity_id, owner, parties)
    for old in store.parties_of(activity_id):
        store.remove("activityparty", old)
    for party in rows:
        store.insert("activityparty", party)


def create_record(store: CrmStore, logical: str, payload: dict[str, Any], caller: Caller,
                  *, system: bool = False, record_id: str | None = None) -> str:
    """POST semantics (and the create half of an upsert); returns the new id."""
    entity = store.md.by_logical[logical]
    if logical in ("activitypointer", "activityparty"):
        raise errors.bad_request(f"The 'Create' method does not support entities of type "
                                 f"'{logical}'.")
    if not isinstance(payload, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    row: dict[str, Any] = {"@lookup": {}}
    touched, parties = _apply(store, entity, row, payload, caller, creating=True, system=system)
    if not system:
        _check_field_security(store, entity, touched, caller, creating=True)
    row_id = (record_id or row.get(entity.primary_key) or new_id()).lower()
    if store.row(logical, row_id) is not None:
        raise DataverseError(412, errors.DUPLICATE,
                             "A record with matching key values already exists.")
    row[entity.primary_key] = row_id
    if entity.owned and "_ownerid_value" not in row:
        row["_ownerid_value"] = caller.systemuser_id
        row["@lookup"]["_ownerid_value"] = "systemuser"
    if entity.owned:
        owner = row["_ownerid_value"]
        if "_owninguser_value" in entity.columns:
            row["_owninguser_value"] = owner
            row["@lookup"]["_owninguser_value"] = "systemuser"
        if "_owningbusinessunit_value" in entity.columns:
            row["_owningbusinessunit_value"] = store.business_unit_of(owner)
            row["@lookup"]["_owningbusinessunit_value"] = "businessunit"
        if "owneridtype" in entity.columns:
            row["owneridtype"] = "systemuser"
    for column, who in (("_createdby_value", caller.systemuser_id),
                        ("_modifiedby_value", caller.systemuser_id),
                        ("_createdonbehalfby_value", caller.on_behalf_of),
                        ("_modifiedonbehalfby_value", caller.on_behalf_of)):
        if column in entity.columns and who and column not in row:
            row[column] = who
            row["@lookup"][column] = "systemuser"
    if logical in ACTIVITIES:
        row["activitytypecode"] = logical
        if logical == "email" and row.get("directioncode") is None:
            row["directioncode"] = True
        regarding = row["@lookup"].get("_regardingobjectid_value")
        if regarding and "regardingobjecttypecode" in entity.columns:
            row["regardingobjecttypecode"] = regarding
    _state_status(entity, row, touched, creating=True)
    _computed(entity, row, touched)
    if not system or "createdon" not in row:
        row.pop("createdon", None)
    store.stamp(logical, row)
    store.insert(logical, row)
    if parties is not None:
        if entity.party_nav is None and not system:
            raise _unknown_payload_property("parties", entity)
        _replace_parties(store, entity, row_id, row.get("_ownerid_value"), parties)
    return row_id


def update_record(store: CrmStore, logical: str, row_id: str, payload: dict[str, Any],
                  caller: Caller, *, system: bool = False) -> None:
    """PATCH semantics on an existing row: validate into a copy, then swap it in."""
    entity = store.md.by_logical[logical]
    if logical in ("activitypointer", "activityparty") and not system:
        raise errors.bad_request(f"The 'Update' method does not support entities of type "
                                 f"'{logical}'.")
    if not isinstance(payload, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    current = store.row(logical, row_id)
    assert current is not None
    row = {k: (dict(v) if isinstance(v, dict) else v) for k, v in current.items()}
    touched, parties = _apply(store, entity, row, payload, caller, creating=False, system=system)
    if not system:
        _check_field_security(store, entity, touched, caller, creating=False)
    if "_regardingobjectid_value" in touched and "regardingobjecttypecode" in entity.columns:
        row["regardingobjecttypecode"] = row["@lookup"].get("_regardingobjectid_value")
    _state_status(entity, row, touched, creating=False)
    _computed(entity, row, touched)
    if "_ownerid_value" in touched and "_owninguser_value" in entity.columns:
        row["_owninguser_value"] = row.get("_ownerid_value")
    for column, who in (("_modifiedby_value", caller.systemuser_id),
                        ("_modifiedonbehalfby_value", caller.on_behalf_of)):
        if column in entity.columns:
            row[column] = who
            row["@lookup"][column] = "systemuser"
    store.stamp(logical, row)
    store.replace(logical, row_id, row)
    if parties is not None:
        _replace_parties(store, entity, row_id, row.get("_ownerid_value"), parties)


def touch(store: CrmStore, logical: str, row_id: str, changes: dict[str, Any]) -> None:
    """A system-side change (SendEmail): new version, modifiedon, no validation."""
    current = store.row(logical, row_id)
    assert current is not None
    row = {**current, **changes, "@lookup": dict(current.get("@lookup", {}))}
    store.stamp(logical, row)
    store.replace(logical, row_id, row)


__all__ = ["API_PREFIX", "create_record", "parse_bind", "resolve_nav", "touch", "update_record",
           "utc_now"]
