"""The sandbox's whole state: tenant, app registrations, users, and the emulators' stores.

One object, reachable from every handler as `request.app.state.world`, so a seed or a reset
replaces everything at once and the three emulators always agree on who exists.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.faults import FaultRegistry

DEMO_SEED = Path(__file__).parent / "seeds" / "demo.json"


@dataclass
class SandboxUser:
    object_id: str
    upn: str
    display_name: str
    systemuser_id: str
    business_unit_id: str
    disabled: bool = False
    crm_read_scope: str = "organization"
    field_access: set[str] = field(default_factory=set)

    @property
    def mail(self) -> str:
        return self.upn


@dataclass
class AppRegistration:
    client_id: str
    client_secret: str
    display_name: str
    object_id: str
    graph_roles: list[str] = field(default_factory=list)
    api_roles: list[str] = field(default_factory=list)
    dataverse_application_user: bool = False


class World:
    """Everything the emulators know; replaced wholesale by `load_seed`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.faults = FaultRegistry()
        self.counters: Counter[str] = Counter()
        self.seed: dict[str, Any] = {}
        self._clear()

    def _clear(self) -> None:
        self.tenant_id = ""
        self.tenant_name = ""
        self.org_domains: list[str] = []
        self.api_client_id = ""
        self.api_audience = ""
        self.api_scope = "access_as_user"
        self.users: dict[str, SandboxUser] = {}
        self.apps: dict[str, AppRegistration] = {}
        self._by_upn: dict[str, SandboxUser] = {}
        self.graph: Any = None
        self.crm: Any = None

    def user(self, id_or_upn: str) -> SandboxUser | None:
        """Look a user up by object id or UPN, as Graph's /users/{id} does."""
        key = id_or_upn.strip().lower()
        return self.users.get(key) or self._by_upn.get(key)

    def reset(self) -> None:
        """Back to the seed last loaded, with faults and counters cleared."""
        self.load_seed(self.seed)

    def load_seed(self, seed: dict[str, Any]) -> None:
        from sandbox.dataverse import CrmStore
        from sandbox.graph import GraphStore

        self._clear()
        self.seed = seed
        self.faults.clear()
        self.counters.clear()
        tenant = seed.get("tenant", {})
        self.tenant_id = tenant.get("id", "00000000-0000-0000-0000-000000000001").lower()
        self.tenant_name = tenant.get("name", "Sandbox")
        self.org_domains = [d.lower() for d in tenant.get("domains", [])]
        api = seed.get("api", {})
        self.api_client_id = api.get("client_id", "")
        self.api_audience = api.get("audience", f"api://{self.api_client_id}")
        self.api_scope = api.get("scope", "access_as_user")
        for raw in seed.get("apps", []):
            app = AppRegistration(
                client_id=raw["client_id"].lower(),
                client_secret=raw["client_secret"],
                display_name=raw.get("display_name", raw["client_id"]),
                object_id=raw.get("object_id", raw["client_id"]).lower(),
                graph_roles=list(raw.get("graph_roles", [])),
                api_roles=list(raw.get("api_roles", [])),
                dataverse_application_user=bool(raw.get("dataverse_application_user", False)),
            )
            self.apps[app.client_id] = app
        for raw in seed.get("users", []):
            user = SandboxUser(
                object_id=raw["object_id"].lower(),
                upn=raw["upn"].lower(),
                display_name=raw.get("display_name", raw["upn"]),
                systemuser_id=raw.get("systemuser_id", raw["object_id"]).lower(),
                business_unit_id=raw.get(
                    "business_unit_id", "00000000-0000-0000-0000-0000000000b1"
                ).lower(),
                disabled=bool(raw.get("disabled", False)),
                crm_read_scope=raw.get("crm_read_scope", "organization"),
                field_access=set(raw.get("field_access", [])),
            )
            self.users[user.object_id] = user
            self._by_upn[user.upn] = user
        self.graph = GraphStore(self)
        self.crm = CrmStore(self)
        self.graph.load_seed(seed)
        self.crm.load_seed(seed)


def read_seed(path: Path | None) -> dict[str, Any]:
    """The seed file given, or the demo seed that ships with the sandbox."""
    return json.loads((path or DEMO_SEED).read_text(encoding="utf-8"))
