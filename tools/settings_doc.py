"""Generate docs/settings.md from the settings model, so the page can never drift from the code.

`python -m tools.settings_doc` rewrites the page; the test suite fails when it is stale.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

from pydantic_core import PydanticUndefined

from shared.settings import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"

HEADER = """# App settings

Every setting the function app reads, generated from `shared/settings.py` by
`python -m tools.settings_doc` (a test fails when this page is stale). In Azure these are app
settings (environment variables); locally they come from `local.settings.json` or the
environment. A missing or wrong setting stops start-up with one log line naming it, for example
`Invalid app setting SYNC_INTERVAL_MINUTES: Input should be a valid integer`.

| setting | default | constraints | meaning |
|---|---|---|---|
"""


def _default(field) -> str:  # type: ignore[no-untyped-def]
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is PydanticUndefined or value is None:
        return "—"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list):
        value = ",".join(value) if value else ""
    return f"`{value}`" if value != "" else "(empty)"


def _constraints(field) -> str:  # type: ignore[no-untyped-def]
    parts = []
    for meta in field.metadata:
        for name, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            value = getattr(meta, name, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        for name in ("pattern", "min_length", "max_length"):
            value = getattr(meta, name, None)
            if value is not None:
                parts.append(f"{name.replace('_', ' ')} `{value}`")
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        parts.append("one of " + ", ".join(f"`{m.value}`" for m in annotation))
    return "; ".join(parts) or "—"


def render() -> str:
    rows = []
    for field in Settings.model_fields.values():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{field.alias}` | {_default(field)} | {_constraints(field)} | "
                    f"{description} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
