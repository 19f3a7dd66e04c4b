"""Import the FunctionApp object from a `module:attribute` reference, as the worker indexes it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from .config import DevHostError


def _is_function_app(value: Any) -> bool:
    return callable(getattr(value, "get_functions", None)) and not isinstance(value, type)


def _configuration_problems(error: BaseException) -> list[str]:
    """The lines of an app that refuses to start over its configuration: an exception carrying
    `problems` (one string per bad setting) needs those lines, not a traceback."""
    problems = getattr(error, "problems", None)
    if isinstance(problems, list | tuple) and all(isinstance(p, str) for p in problems):
        return list(problems)
    return []


def load_app(reference: str = "function_app:app", *, search_path: str | None = None) -> Any:
    """Return the app object; without `:attr`, the module's only FunctionApp instance.

    The working directory (or search_path) goes first on sys.path, since function_app.py
    imports its sibling packages (shared/) the way the worker's script root allows.
    """
    root = str(Path(search_path or ".").resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise DevHostError(f"cannot import '{module_name}' (looked in {root})") from exc
        raise
    except Exception as exc:
        problems = _configuration_problems(exc)
        if problems:
            raise DevHostError("\n".join(problems)) from None
        raise
    if attribute:
        try:
            app = getattr(module, attribute)
        except AttributeError:
            raise DevHostError(f"module '{module_name}' has no attribute '{attribute}'") from None
        if not _is_function_app(app):
            raise DevHostError(f"'{reference}' is not a FunctionApp (no get_functions())")
        return app
    apps = [v for v in vars(module).values() if _is_function_app(v)]
    if len(apps) != 1:
        raise DevHostError(
            f"module '{module_name}' has {len(apps)} FunctionApp objects; name one as module:attr"
        )
    return apps[0]
