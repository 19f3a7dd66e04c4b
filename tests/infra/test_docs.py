"""The runbooks keep up with the code: every setting is explained in docs/deploy.md and every
error kind in docs/operations.md."""

from __future__ import annotations

import pytest

from shared.errors import ErrorKind
from shared.settings import Settings
from tests.infra.bicep import ROOT

DEPLOY = ROOT / "docs" / "deploy.md"
OPERATIONS = ROOT / "docs" / "operations.md"


@pytest.mark.parametrize(
    "alias", sorted(f.alias for f in Settings.model_fields.values() if f.alias)
)
def test_every_setting_is_in_the_deploy_guide(alias):
    assert f"| `{alias}` |" in DEPLOY.read_text(), f"docs/deploy.md has no row for {alias}"


@pytest.mark.parametrize("kind", [k.value for k in ErrorKind])
def test_every_error_kind_is_in_the_operations_guide(kind):
    assert f"| `{kind}` |" in OPERATIONS.read_text(), f"docs/operations.md has no row for {kind}"
