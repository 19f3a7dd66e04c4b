"""HTTP plumbing shared by the Graph and Dataverse clients: one retry loop, request counting."""

from shared.http.retry import (
    RequestStats,
    RetryPolicy,
    parse_retry_after,
    send_with_retry,
    with_operations,
)

__all__ = ["RequestStats", "RetryPolicy", "parse_retry_after", "send_with_retry",
           "with_operations"]
