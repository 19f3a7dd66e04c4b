"""Dataverse Web API client (OData, $batch, impersonation, ETags) and its one error mapper."""

from shared.dataverse.batch import DataverseOperation, DataverseResult, entity_id_of
from shared.dataverse.client import DataverseClient
from shared.dataverse.errors import dataverse_error, dataverse_error_from

__all__ = ["DataverseClient", "DataverseOperation", "DataverseResult", "dataverse_error",
           "dataverse_error_from", "entity_id_of"]
