"""Emulated Dataverse Web API (v9.2) for the sandbox: tables, OData queries, $batch, security.

`CrmStore(world)` holds the organisation's rows; `routes()` serves `/api/data/v9.2/...` and
`control_routes()` the test-facing `/_sandbox/crm/...`. Entity names, columns, types and option
values come from the project's copy of the Dataverse metadata subset (tests/specs).
"""

from sandbox.dataverse.control import control_routes
from sandbox.dataverse.routes import routes
from sandbox.dataverse.store import CrmStore

__all__ = ["CrmStore", "control_routes", "routes"]
