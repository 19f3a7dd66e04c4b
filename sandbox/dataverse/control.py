"""Control routes under /_sandbox/crm: what tests use to arrange and inspect the CRM.

They bypass security on purpose (no token, no record or field security) and show every row with
its party list expanded, so a test can assert exactly what the sync wrote.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.dataverse.errors import DataverseError
from sandbox.dataverse.metadata import Entity
from sandbox.dataverse.query import Expand, Options, Prefer, project
from sandbox.dataverse.store import Caller, CrmStore
from sandbox.dataverse.writes import create_record, update_record


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"title": "CRM control error", "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def _store(request: Request) -> CrmStore:
    return request.app.state.world.crm


def _entity(store: CrmStore, name: str) -> Entity | None:
    return store.md.by_set.get(name) or store.md.by_logical.get(name)


def _full(store: CrmStore, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A row as the application user sees it, parties expanded, plus sandbox annotations."""
    options = Options()
    if entity.party_nav:
        options.expand.append(Expand(entity.party_nav, True,
                                     store.md.by_logical["activityparty"], None, None, Options()))
    out = project(store, entity, row, Caller(""), options,
                  Prefer(annotations="Microsoft.Dynamics.CRM.lookuplogicalname"))
    source = row.get("activitytypecode") if entity.logical == "activitypointer" else entity.logical
    shared = store.shares.get((str(source), str(row.get(entity.primary_key))), set())
    out["@sandbox.shared_with"] = sorted(shared)
    return out


def _owner_caller(request: Request, store: CrmStore, owner: Any) -> Caller:
    if not owner:
        return store.app_caller()
    user = request.app.state.world.user(str(owner))
    if user is None:
        raise DataverseError(400, "", f"unknown owner {owner!r}")
    return Caller(user.systemuser_id)


async def list_rows(request: Request) -> Response:
    store = _store(request)
    entity = _entity(store, request.path_params["entityset"])
    if entity is None:
        return _problem(404, "unknown entity set")
    rows = [_full(store, entity, row) for row in store.rows_of(entity.logical)]
    return JSONResponse({"value": rows, "count": len(rows)})


async def get_row(request: Request) -> Response:
    store = _store(request)
    entity = _entity(store, request.path_params["entityset"])
    if entity is None:
        return _problem(404, "unknown entity set")
    row = store.row(entity.logical, request.path_params["id"])
    if row is None:
        return _problem(404, "no such row")
    return JSONResponse(_full(store, entity, row))


async def create_row(request: Request) -> Response:
    store = _store(request)
    entity = _entity(store, request.path_params["entityset"])
    if entity is None:
        return _problem(404, "unknown entity set")
    body = await request.json()
    if not isinstance(body, dict):
        return _problem(400, "the body must be a JSON object")
    try:
        caller = _owner_caller(request, store, body.pop("owner", None))
        shared = body.pop("shared_with", [])
        row_id = create_record(store, entity.logical, body, caller, system=True)
        if shared:
            _share(request, store, entity, row_id, shared, replace=True)
    except DataverseError as error:
        return _problem(error.status, error.message)
    row = store.row(entity.logical, row_id)
    assert row is not None
    return JSONResponse(_full(store, entity, row), status_code=201)


async def patch_row(request: Request) -> Response:
    store = _store(request)
    entity = _entity(store, request.path_params["entityset"])
    if entity is None:
        return _problem(404, "unknown entity set")
    row_id = request.path_params["id"].lower()
    if store.row(entity.logical, row_id) is None:
        return _problem(404, "no such row")
    body = await request.json()
    if not isinstance(body, dict):
        return _problem(400, "the body must be a JSON object")
    try:
        owner = body.pop("owner", None)
        if owner:
            user = request.app.state.world.user(str(owner))
            if user is None:
                return _problem(400, f"unknown owner {owner!r}")
            body["_ownerid_value"] = user.systemuser_id
        update_record(store, entity.logical, row_id, body, store.app_caller(), system=True)
    except DataverseError as error:
        return _problem(error.status, error.message)
    row = store.row(entity.logical, row_id)
    assert row is not None
    return JSONResponse(_full(store, entity, row))


async def delete_row(request: Request) -> Response:
    store = _store(request)
    entity = _entity(store, request.path_params["entityset"])
    if entity is None:
        return _problem(404, "unknown entity set")
    row_id = request.path_params["id"].lower()
    if store.row(entity.logical, row_id) is None:
        return _problem(404, "no such row")
    store.remove(entity.logical, row_id)
    return Response(status_code=204)


def _share(request: Request, store: CrmStore, entity: Entity, row_id: str, users: list[Any],
           *, replace: bool) -> set[str]:
    world = request.app.state.world
    ids: set[str] = set() if replace else set(store.shares.get((entity.logical, row_id), set()))
    for who in users:
        user = world.user(str(who))
        if user is None:
            raise DataverseError(400, "", f"unknown user {who!r}")
        ids.add(user.systemuser_id)
    store.set_shares(entity.logical, row_id, ids)
    return ids


async def share(request: Request) -> Response:
    """POST {table, id, users: [upn|oid...], replace?: bool}: grant read/write on one row."""
    store = _store(request)
    body = await request.json()
    entity = _entity(store, str(body.get("table", "")))
    if entity is None:
        return _problem(400, "table: unknown table")
    row_id = str(body.get("id", "")).lower()
    if store.row(entity.logical, row_id) is None:
        return _problem(404, "no such row")
    try:
        ids = _share(request, store, entity, row_id, list(body.get("users", [])),
                     replace=bool(body.get("replace", False)))
    except DataverseError as error:
        return _problem(error.status, error.message)
    return JSONResponse({"table": entity.logical, "id": row_id, "shared_with": sorted(ids)})


async def field_security(request: Request) -> Response:
    """PUT {table, column, readers: [upn|oid...]}: secure a column for all but these users."""
    store = _store(request)
    world = request.app.state.world
    body = await request.json()
    entity = _entity(store, str(body.get("table", "")))
    column = str(body.get("column", "")).lower()
    if entity is None or column not in entity.columns:
        return _problem(400, "table/column: unknown")
    readers = set()
    for who in body.get("readers", []):
        user = world.user(str(who))
        if user is None:
            return _problem(400, f"unknown user {who!r}")
        readers.add(user.object_id)
    store.secured[entity.logical].add(column)
    key = f"{entity.logical}.{column}"
    for user in world.users.values():
        if user.object_id in readers:
            user.field_access.add(key)
        else:
            user.field_access.discard(key)
    return JSONResponse({"table": entity.logical, "column": column,
                         "readers": sorted(world.users[o].upn for o in readers)})


def control_routes() -> list[Route]:
    return [
        Route("/crm/shares", share, methods=["POST"]),
        Route("/crm/field-security", field_security, methods=["PUT"]),
        Route("/crm/{entityset}", list_rows, methods=["GET"]),
        Route("/crm/{entityset}", create_row, methods=["POST"]),
        Route("/crm/{entityset}/{id}", get_row, methods=["GET"]),
        Route("/crm/{entityset}/{id}", patch_row, methods=["PATCH"]),
        Route("/crm/{entityset}/{id}", delete_row, methods=["DELETE"]),
    ]
