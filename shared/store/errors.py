"""Store failures the engines react to, mapped from azure-core exceptions in one place.

Repositories never leak azure exceptions: a lost ETag race is a ConcurrencyError (re-read and
retry), a create that finds the row is AlreadyExists, a missing row is NotFound.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)


class StoreError(Exception):
    """Base of every store failure."""


class ConcurrencyError(StoreError):
    """Someone changed (or deleted) the row since it was read: re-read and retry."""


class AlreadyExists(StoreError):
    """A create found the row already there."""


class NotFound(StoreError):
    """The row (or table) is not there."""


_EXISTS_CODES = {"EntityAlreadyExists", "TableAlreadyExists", "QueueAlreadyExists"}
_MODIFIED_CODES = {"UpdateConditionNotSatisfied", "ConditionNotMet"}
_MISSING_CODES = {"ResourceNotFound", "EntityNotFound", "TableNotFound", "QueueNotFound"}


def _code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "")


@contextmanager
def mapped_errors(
    what: str = "row", *, missing: type[StoreError] = NotFound
) -> Iterator[None]:
    """Translate azure-core errors (single calls and batch transactions alike).

    `missing` lets a conditional update report a vanished row as the race it is
    (ConcurrencyError) instead of NotFound.
    """
    try:
        yield
    except ResourceModifiedError as error:
        raise ConcurrencyError(f"{what} changed since it was read") from error
    except ResourceExistsError as error:
        raise AlreadyExists(f"{what} already exists") from error
    except ResourceNotFoundError as error:
        raise missing(f"{what} not found") from error
    except HttpResponseError as error:  # batch transactions carry only a code
        code = _code(error)
        if code in _MODIFIED_CODES or error.status_code == 412:
            raise ConcurrencyError(f"{what} changed since it was read") from error
        if code in _EXISTS_CODES:
            raise AlreadyExists(f"{what} already exists") from error
        if code in _MISSING_CODES:
            raise missing(f"{what} not found") from error
        raise


__all__ = ["AlreadyExists", "ConcurrencyError", "NotFound", "StoreError", "mapped_errors"]
