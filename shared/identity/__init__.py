"""Tokens out (app-only through azure-identity, on-behalf-of through msal) and tokens in
(validation of the Entra tokens the add-in and admins send to our API)."""

from shared.identity.errors import AuthenticationError, AuthorizationError
from shared.identity.tokens import (
    AppTokenAuth,
    OboTokenAuth,
    OboTokenProvider,
    aclose_obo_providers,
    credential_from_settings,
    obo_provider,
)
from shared.identity.validation import Caller, TokenValidator, require_role, require_scope

__all__ = [
    "AppTokenAuth",
    "AuthenticationError",
    "AuthorizationError",
    "Caller",
    "OboTokenAuth",
    "OboTokenProvider",
    "TokenValidator",
    "aclose_obo_providers",
    "credential_from_settings",
    "obo_provider",
    "require_role",
    "require_scope",
]
