"""Microsoft Graph client (mail, calendar, contacts, To Do) and its one error mapper."""

from shared.graph.client import (
    BatchRequest,
    BatchResponse,
    DeltaPage,
    GraphClient,
    new_transaction_id,
)
from shared.graph.errors import graph_error, graph_error_from

__all__ = ["BatchRequest", "BatchResponse", "DeltaPage", "GraphClient", "graph_error",
           "graph_error_from", "new_transaction_id"]
