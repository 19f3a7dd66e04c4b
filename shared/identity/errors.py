"""Refusals of an incoming call: who you are (401) versus what you may do (403).

`reason` is short and safe to return to the caller: it never holds the token or its claims.
"""

from __future__ import annotations


class AuthenticationError(Exception):
    """The caller's token is missing or not acceptable (HTTP 401)."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthorizationError(Exception):
    """The token is fine but lacks the scope or role this call needs (HTTP 403)."""

    status = 403

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
