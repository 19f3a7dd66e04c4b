"""The rules that span several settings, and the report of every bad setting at once.

Kept apart from the declarations in shared/settings.py because a pydantic model validator only
runs once every field is valid: four missing settings and a minimum above its maximum would
come out one per restart. Here each problem is one line naming its setting, all in one report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

Problem = tuple[str, str]  # (setting name, what is wrong with it)
Value = Callable[[str], Any]  # a setting's typed value, its default when unset, None when bad


def line(setting: str, message: str) -> str:
    return f"Invalid app setting {setting}: {message}"


def field_problems(error: ValidationError, fields: Mapping[str, FieldInfo]) -> list[Problem]:
    """One problem per failed field, named by its app setting (never echoing the value)."""
    problems = []
    for item in error.errors():
        loc = item.get("loc") or ()
        name = str(loc[0]) if loc else "?"
        field = fields.get(name)
        setting = field.alias if field is not None and field.alias else name
        problems.append((setting, str(item.get("msg", "invalid")).removeprefix("Value error, ")))
    return problems


def typed_values(fields: Mapping[str, FieldInfo], source: Mapping[str, str]) -> Value:
    """Look settings up by name, typed and constrained as their field declares."""
    by_alias = {field.alias: field for field in fields.values() if field.alias}

    def value(setting: str) -> Any:
        field = by_alias[setting]
        if setting not in source:
            return field.get_default(call_default_factory=True)
        try:
            kind: Any = field.annotation
            if field.metadata:
                kind = Annotated[kind, *field.metadata]
            return TypeAdapter(kind).validate_python(source[setting])
        except ValidationError:
            return None  # reported by the field's own check

    return value


def interval_problems(value: Value) -> list[Problem]:
    """MIN <= normal <= MAX; a minimum above the maximum blames those two, not the normal one."""
    low, normal, high = (value("SYNC_INTERVAL_MIN_MINUTES"), value("SYNC_INTERVAL_MINUTES"),
                         value("SYNC_INTERVAL_MAX_MINUTES"))
    if low is not None and high is not None and low > high:
        return [("SYNC_INTERVAL_MIN_MINUTES", f"{low} is above SYNC_INTERVAL_MAX_MINUTES ({high})")]
    if normal is not None and low is not None and normal < low:
        return [("SYNC_INTERVAL_MINUTES", f"{normal} is below SYNC_INTERVAL_MIN_MINUTES ({low})")]
    if normal is not None and high is not None and normal > high:
        return [("SYNC_INTERVAL_MINUTES", f"{normal} is above SYNC_INTERVAL_MAX_MINUTES ({high})")]
    return []


def storage_problems(value: Value) -> list[Problem]:
    names = ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName",
             "AzureWebJobsStorage__tableServiceUri")
    if any(value(name) for name in names):
        return []
    return [("AzureWebJobsStorage",
             "set a connection string or AzureWebJobsStorage__accountName")]


def credential_problems(value: Value) -> list[Problem]:
    names = ("ENTRA_CLIENT_SECRET", "ENTRA_CLIENT_CERTIFICATE_PATH", "USE_MANAGED_IDENTITY")
    if any(value(name) for name in names):
        return []
    return [("ENTRA_CLIENT_SECRET",
             "set it, ENTRA_CLIENT_CERTIFICATE_PATH, or USE_MANAGED_IDENTITY=true")]


RULES: tuple[Callable[[Value], list[Problem]], ...] = (
    interval_problems, storage_problems, credential_problems,
)


def report(field_level: Iterable[Problem], value: Value) -> list[str]:
    """Every problem as one line: the fields' own, then the rules', each setting named once."""
    problems = list(field_level)
    named = {setting for setting, _ in problems}
    for rule in RULES:
        problems += [p for p in rule(value) if p[0] not in named]
    return [line(setting, message) for setting, message in problems]
