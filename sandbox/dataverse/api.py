"""One Web API operation, independent of transport: used by the HTTP routes and by `$batch`.

An `ApiRequest` (method, path under /api/data/v9.2/, query, headers, body, caller) becomes an
`ApiResponse` (status, headers, JSON body). Retrieve, create (204 + OData-EntityId, or 201 with
`Prefer: return=representation`), update and upsert with If-Match / If-None-Match, delete,
single-property PUT/DELETE, party-list navigation, WhoAmI and SendEmail.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sandbox.dataverse import errors
from sandbox.dataverse.actions import send_email, who_am_i
from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.metadata import Entity
from sandbox.dataverse.query import (
    Options,
    Prefer,
    decode_skiptoken,
    next_link,
    parse_options,
    project,
    select_rows,
)
from sandbox.dataverse.store import Caller, CrmStore
from sandbox.dataverse.writes import create_record, update_record

API_PATH = "/api/data/v9.2/"
_KEY_RE = re.compile(r"^(\w+)\(([0-9a-fA-F-]{36})\)$")


@dataclass
class ApiRequest:
    method: str
    path: str                      # under /api/data/v9.2/, no leading slash, no query
    query: str
    headers: dict[str, str]        # lower-case names
    body: bytes
    caller: Caller


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None               # JSON-able, or None for no content

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, {"Content-Type": "application/json; odata.metadata=minimal",
                                "OData-Version": "4.0", **(headers or {})}, body)


def error_to_response(error: DataverseError) -> ApiResponse:
    return _json_response(error.status, error.body(), error.headers)


class Api:
    """Dispatches ApiRequests against one store."""

    def __init__(self, store: CrmStore, base_url: str) -> None:
        self.store = store
        self.base = base_url.rstrip("/") + API_PATH.rstrip("/")

    def handle(self, request: ApiRequest) -> ApiResponse:
        try:
            return self._dispatch(request)
        except DataverseError as error:
            return error_to_response(error)

    # --- routing ------------------------------------------------------------------------------

    def _dispatch(self, req: ApiRequest) -> ApiResponse:
        segments = [s for s in req.path.split("/") if s]
        method = req.method.upper()
        if not segments:
            return self._service_document()
        head = segments[0]
        if head in ("WhoAmI", "WhoAmI()"):
            if method != "GET" or len(segments) > 1:
                raise DataverseError(405, errors.INVALID_ARGUMENT, "WhoAmI is a GET function.")
            return _json_response(200, who_am_i(self.store, req.caller, self.base))
        if head in self.store.md.by_set:
            entity = self.store.md.by_set[head]
            if len(segments) > 1:
                raise errors.bad_request(f"Resource not found for the segment '{head}'.",
                                         errors.UNKNOWN_PROPERTY)
            if method == "GET":
                return self._list(req, entity)
            if method == "POST":
                return self._create(req, entity)
            raise DataverseError(405, errors.INVALID_ARGUMENT,
                                 f"The method {method} is not allowed on a collection.")
        match = _KEY_RE.match(head)
        if match is None or match.group(1) not in self.store.md.by_set:
            raise DataverseError(404, errors.UNKNOWN_PROPERTY,
                                 f"Resource not found for the segment '{head}'.")
        entity = self.store.md.by_set[match.group(1)]
        record_id = match.group(2).lower()
        if len(segments) == 1:
            if method == "GET":
                return self._retrieve(req, entity, record_id)
            if method == "PATCH":
                return self._patch(req, entity, record_id)
            if method == "DELETE":
                return self._delete(req, entity, record_id)
            raise DataverseError(405, errors.INVALID_ARGUMENT,
                                 f"The method {method} is not allowed on an entity.")
        if len(segments) == 2:
            tail = segments[1]
            if tail == "Microsoft.Dynamics.CRM.SendEmail" and entity.logical == "email":
                if method != "POST":
                    raise DataverseError(405, errors.INVALID_ARGUMENT, "SendEmail is an action.")
                row = self._writable(entity, record_id, req.caller)
                return _json_response(200, send_email(self.store, row, _body(req), self.base))
            if entity.party_nav and tail == entity.party_nav and method == "GET":
                return self._parties(req, entity, record_id)
            if tail in entity.columns:
                return self._property(req, entity, record_id, tail)
        raise DataverseError(404, errors.UNKNOWN_PROPERTY,
                             f"Resource not found for the segment '{segments[-1]}'.")

    def _service_document(self) -> ApiResponse:
        sets = [{"name": s, "kind": "EntitySet", "url": s} for s in self.store.md.by_set]
        return _json_response(200, {"@odata.context": f"{self.base}/$metadata", "value": sets})

    # --- reads --------------------------------------------------------------------------------

    def _visible_row(self, entity: Entity, record_id: str, caller: Caller) -> dict[str, Any]:
        row = self.store.row(entity.logical, record_id)
        if row is None:
            raise errors.not_found(entity.logical, record_id)
        if not self.store.visible(entity.logical, row, caller):
            raise self._access_denied(entity, row, caller, "ReadAccess")
        return row

    def _access_denied(self, entity: Entity, row: dict[str, Any], caller: Caller,
                       rights: str) -> DataverseError:
        return DataverseError(
            403, errors.ACCESS_DENIED,
            f"SecLib::AccessCheckEx failed. Returned hr = -2147187962, ObjectID: "
            f"{row.get(entity.primary_key)}, OwnerId: {row.get('_ownerid_value')},  "
            f"OwnerIdType: 8 and CallingUser: {caller.systemuser_id}. ObjectTypeCode: "
            f"{entity.logical}, objectBusinessUnitId: {row.get('_owningbusinessunit_value')}, "
            f"AccessRights: {rights} ")

    def _writable(self, entity: Entity, record_id: str, caller: Caller) -> dict[str, Any]:
        row = self.store.row(entity.logical, record_id)
        if row is None:
            raise errors.not_found(entity.logical, record_id)
        if not self.store.visible(entity.logical, row, caller):
            raise self._access_denied(entity, row, caller, "WriteAccess")
        return row

    def _retrieve(self, req: ApiRequest, entity: Entity, record_id: str) -> ApiResponse:
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        options = parse_options(self.store, entity, params)
        prefer = Prefer.parse(req.headers.get("prefer"))
        row = self._visible_row(entity, record_id, req.caller)
        etag = self.store.etag(row)
        if (req.headers.get("if-none-match") == etag and not options.expand
                and not prefer.annotations):
            return ApiResponse(304, {"OData-Version": "4.0", "ETag": etag})
        body = {"@odata.context": f"{self.base}/$metadata#{entity.entity_set}/$entity",
                **project(self.store, entity, row, req.caller, options, prefer)}
        return _json_response(200, body, {"ETag": etag, **_applied(prefer)})

    def _list(self, req: ApiRequest, entity: Entity) -> ApiResponse:
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        options = parse_options(self.store, entity, params)
        prefer = Prefer.parse(req.headers.get("prefer"))
        rows = select_rows(self.store, entity, self.store.rows_of(entity.logical), options,
                           req.caller)
        return self._page(req, entity, rows, options, prefer, params)

    def _page(self, req: ApiRequest, entity: Entity, rows: list[dict[str, Any]],
              options: Options, prefer: Prefer, params: dict[str, str]) -> ApiResponse:
        total = len(rows)
        if options.top is not None:
            rows = rows[: options.top]
        offset = decode_skiptoken(options.skiptoken) if options.skiptoken else 0
        page_size = prefer.maxpagesize if options.top is None else None
        page_size = page_size or 5000
        page = rows[offset: offset + page_size]
        body: dict[str, Any] = {"@odata.context": f"{self.base}/$metadata#{entity.entity_set}"}
        if options.count:
            body["@odata.count"] = min(total, 5000)
        body["value"] = [project(self.store, entity, r, req.caller, options, prefer)
                         for r in page]
        if offset + page_size < len(rows):
            kept = {k: v for k, v in params.items() if k != "$skiptoken"}
            base = f"{self.base}/{req.path}"
            url = f"{base}?{urlencode(kept, safe=chr(36) + chr(39) + '(),=/:@')}" if kept else base
            body["@odata.nextLink"] = next_link(url, offset + page_size,
                                                offset // page_size + 2)
        return _json_response(200, body, _applied(prefer))

    def _parties(self, req: ApiRequest, entity: Entity, record_id: str) -> ApiResponse:
        self._visible_row(entity, record_id, req.caller)
        party_entity = self.store.md.by_logical["activityparty"]
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        options = parse_options(self.store, party_entity, params)
        prefer = Prefer.parse(req.headers.get("prefer"))
        table = self.store.tables["activityparty"]
        rows = [table.rows[p] for p in self.store.parties_of(record_id)]
        rows = select_rows(self.store, party_entity, rows, options, req.caller,
                           candidates_from_index=False)
        response = self._page(req, party_entity, rows, options, prefer, params)
        response.body["@odata.context"] = f"{self.base}/$metadata#activityparties"
        return response

    def _property(self, req: ApiRequest, entity: Entity, record_id: str,
                  column: str) -> ApiResponse:
        method = req.method.upper()
        if method == "GET":
            row = self._visible_row(entity, record_id, req.caller)
            hidden = self.store.hidden_columns(entity.logical, req.caller)
            value = None if column in hidden else row.get(column)
            if value is None:
                return ApiResponse(204, {"OData-Version": "4.0"})
            return _json_response(200, {"@odata.context": f"{self.base}/$metadata#"
                                        f"{entity.entity_set}({record_id})/{column}",
                                        "value": value})
        if method in ("PUT", "DELETE"):
            self._writable(entity, record_id, req.caller)
            value = _body(req).get("value") if method == "PUT" else None
            if entity.columns[column].lookup:
                raise errors.bad_request("Use the navigation property to set a lookup.")
            update_record(self.store, entity.logical, record_id, {column: value}, req.caller)
            return ApiResponse(204, {"OData-Version": "4.0"})
        raise DataverseError(405, errors.INVALID_ARGUMENT,
                             f"The method {method} is not allowed on a property.")

    # --- writes -------------------------------------------------------------------------------

    def entity_url(self, entity: Entity, record_id: str) -> str:
        return f"{self.base}/{entity.entity_set}({record_id})"

    def _created(self, req: ApiRequest, entity: Entity, record_id: str,
                 *, created: bool = True) -> ApiResponse:
        url = self.entity_url(entity, record_id)
        prefer = Prefer.parse(req.headers.get("prefer"))
        headers = {"OData-Version": "4.0", "OData-EntityId": url, "Location": url}
        if prefer.representation:
            row = self.store.row(entity.logical, record_id) or {}
            params = dict(parse_qsl(req.query, keep_blank_values=True))
            options = parse_options(self.store, entity, params)
            body = {"@odata.context": f"{self.base}/$metadata#{entity.entity_set}/$entity",
                    **project(self.store, entity, row, req.caller, options, prefer)}
            headers["Preference-Applied"] = "return=representation"
            headers["ETag"] = self.store.etag(row)
            return _json_response(201 if created else 200, body, headers)
        if not created:
            headers.pop("Location")
        return ApiResponse(204, headers)

    def _create(self, req: ApiRequest, entity: Entity) -> ApiResponse:
        record_id = create_record(self.store, entity.logical, _body(req), req.caller)
        return self._created(req, entity, record_id)

    def _patch(self, req: ApiRequest, entity: Entity, record_id: str) -> ApiResponse:
        if_match = req.headers.get("if-match")
        if_none_match = req.headers.get("if-none-match")
        row = self.store.row(entity.logical, record_id)
        payload = _body(req)
        if row is None:
            if if_match is not None:
                raise errors.not_found(entity.logical, record_id)
            create_record(self.store, entity.logical, payload, req.caller, record_id=record_id)
            return self._created(req, entity, record_id)
        if if_none_match is not None and if_none_match.strip() == "*":
            raise DataverseError(412, errors.DUPLICATE,
                                 "A record with matching key values already exists.")
        row = self._writable(entity, record_id, req.caller)
        if if_match is not None and if_match.strip() != "*" and \
                if_match.strip() != self.store.etag(row):
            raise DataverseError(412, errors.CONCURRENCY,
                                 "The version of the existing record doesn't match the "
                                 "RowVersion property provided.")
        update_record(self.store, entity.logical, record_id, payload, req.caller)
        return self._created(req, entity, record_id, created=False)

    def _delete(self, req: ApiRequest, entity: Entity, record_id: str) -> ApiResponse:
        if entity.logical in ("activitypointer", "activityparty", "systemuser"):
            raise errors.bad_request(f"The 'Delete' method does not support entities of type "
                                     f"'{entity.logical}'.")
        row = self._writable(entity, record_id, req.caller)
        if_match = req.headers.get("if-match")
        if if_match is not None and if_match.strip() not in ("*", self.store.etag(row)):
            raise DataverseError(412, errors.CONCURRENCY,
                                 "The version of the existing record doesn't match the "
                                 "RowVersion property provided.")
        self.store.remove(entity.logical, record_id)
        return ApiResponse(204, {"OData-Version": "4.0"})


def _applied(prefer: Prefer) -> dict[str, str]:
    applied = []
    if prefer.maxpagesize:
        applied.append(f"odata.maxpagesize={prefer.maxpagesize}")
    if prefer.annotations:
        applied.append(f'odata.include-annotations="{prefer.annotations}"')
    return {"Preference-Applied": ",".join(applied)} if applied else {}


def _body(req: ApiRequest) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    try:
        value = json.loads(req.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise errors.bad_request(f"The request body is not valid JSON: {error}",
                                 "0x80048d19") from error
    if not isinstance(value, dict):
        raise errors.bad_request("The request body must be a JSON object.", "0x80048d19")
    return value
