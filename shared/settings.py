"""Every app setting the function app reads, typed and validated in one place.

Azure app settings arrive as environment variables, so this is a pydantic-settings model whose
field aliases are the exact setting names an admin types. `load_settings()` names every bad
setting at once, one line each (shared/settings_rules.py): what an admin sees in the host log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.settings_rules import field_problems, report, typed_values


class SettingsError(RuntimeError):
    """Settings are missing or wrong; `problems` (and the message) is one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))


class TrackingOption(str, Enum):
    """The personal option "Track incoming email" of Dynamics 365."""

    ALL = "all"
    RESPONSES_TO_CRM = "responses_to_crm"
    FROM_LEADS_CONTACTS_ACCOUNTS = "from_leads_contacts_accounts"
    FROM_EMAIL_ENABLED_RECORDS = "from_email_enabled_records"
    NONE = "none"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """App settings. The alias of each field is the app setting's name."""

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", case_sensitive=True, frozen=True
    )

    # --- storage -------------------------------------------------------------------------
    storage_connection_string: str | None = Field(
        None,
        alias="AzureWebJobsStorage",
        description="Storage connection string (Azurite locally). Leave empty in Azure and use "
        "the identity-based AzureWebJobsStorage__* settings instead.",
    )
    storage_account_name: str | None = Field(
        None,
        alias="AzureWebJobsStorage__accountName",
        description="Identity-based storage: the account name; table and queue URIs are "
        "derived from it.",
    )
    storage_table_service_uri: str | None = Field(
        None,
        alias="AzureWebJobsStorage__tableServiceUri",
        description="Identity-based storage: the table endpoint (overrides the derived one).",
    )
    storage_queue_service_uri: str | None = Field(
        None,
        alias="AzureWebJobsStorage__queueServiceUri",
        description="Identity-based storage: the queue endpoint (overrides the derived one).",
    )
    storage_credential: str | None = Field(
        None,
        alias="AzureWebJobsStorage__credential",
        description="Identity-based storage: `managedidentity` to use a managed identity.",
    )
    storage_client_id: str | None = Field(
        None,
        alias="AzureWebJobsStorage__clientId",
        description="Identity-based storage: client id of the user-assigned managed identity.",
    )
    table_prefix: str = Field(
        "sss",
        alias="TABLE_PREFIX",
        pattern=r"^[A-Za-z][A-Za-z0-9]{0,20}$",
        description="Prefix of every table name, so several deployments can share an account.",
    )

    # --- upstream services -------------------------------------------------------------------
    graph_base_url: str = Field(
        "https://graph.microsoft.com/v1.0",
        alias="GRAPH_BASE_URL",
        description="Microsoft Graph base URL including the version segment.",
    )
    graph_scope: str = Field(
        "https://graph.microsoft.com/.default",
        alias="GRAPH_SCOPE",
        description="Scope asked for app-only Graph tokens.",
    )
    dataverse_url: str = Field(
        ...,
        alias="DATAVERSE_URL",
        description="Dataverse organisation URL, e.g. https://contoso.crm.dynamics.com.",
    )
    dataverse_api_version: str = Field(
        "v9.2", alias="DATAVERSE_API_VERSION", pattern=r"^v\d+\.\d+$",
        description="Dataverse Web API version segment.",
    )
    entra_authority_host: str = Field(
        "https://login.microsoftonline.com",
        alias="ENTRA_AUTHORITY_HOST",
        description="Entra ID authority host (https only).",
    )
    entra_tenant_id: str = Field(
        ..., alias="ENTRA_TENANT_ID", description="Directory (tenant) id of the organisation."
    )
    entra_client_id: str = Field(
        ..., alias="ENTRA_CLIENT_ID", description="Application (client) id of the service."
    )
    entra_client_secret: str | None = Field(
        None,
        alias="ENTRA_CLIENT_SECRET",
        description="Client secret of the service (use a Key Vault reference in Azure).",
    )
    entra_client_certificate_path: str | None = Field(
        None,
        alias="ENTRA_CLIENT_CERTIFICATE_PATH",
        description="PEM file with the service's certificate and private key; an alternative "
        "to the client secret.",
    )
    use_managed_identity: bool = Field(
        False,
        alias="USE_MANAGED_IDENTITY",
        description="Use the managed identity for app-only Graph and Dataverse tokens instead of "
        "the client secret or certificate (on-behalf-of still needs one of them).",
    )
    managed_identity_client_id: str | None = Field(
        None,
        alias="MANAGED_IDENTITY_CLIENT_ID",
        description="Client id of the user-assigned managed identity used for tokens.",
    )
    api_audience: str = Field(
        ...,
        alias="API_AUDIENCE",
        description="Audience (Application ID URI or client id) of tokens the add-in and admins "
        "send to this API.",
    )
    api_scope: str = Field(
        "access_as_user",
        alias="API_SCOPE",
        description="Delegated scope an add-in token must carry.",
    )
    admin_role: str = Field(
        "Sync.Admin",
        alias="ADMIN_ROLE",
        description="App role a caller must hold to use /api/admin endpoints.",
    )

    # --- HTTP behaviour ----------------------------------------------------------------------
    http_timeout_seconds: float = Field(
        30.0, alias="HTTP_TIMEOUT_SECONDS", gt=0, le=230,
        description="Timeout of one upstream HTTP request, in seconds.",
    )
    retry_max_wait_seconds: float = Field(
        60.0, alias="RETRY_MAX_WAIT_SECONDS", ge=0, le=600,
        description="Longest total time one upstream call may spend waiting between retries "
        "(Retry-After included) before it gives up as transient.",
    )
    retry_max_attempts: int = Field(
        4, alias="RETRY_MAX_ATTEMPTS", ge=1, le=10,
        description="Attempts of one upstream call on transient failures.",
    )

    # --- scheduling ----------------------------------------------------------------------------
    scheduler_schedule: str = Field(
        "0 */1 * * * *",
        alias="SCHEDULER_SCHEDULE",
        description="NCRONTAB (six fields) of the scheduler timer.",
    )
    sync_interval_minutes: int = Field(
        5, alias="SYNC_INTERVAL_MINUTES", ge=1, le=60,
        description="Normal interval between two sync cycles of a mailbox, in minutes.",
    )
    sync_interval_min_minutes: int = Field(
        2, alias="SYNC_INTERVAL_MIN_MINUTES", ge=1, le=60,
        description="Shortest interval, for busy mailboxes, in minutes.",
    )
    sync_interval_max_minutes: int = Field(
        12, alias="SYNC_INTERVAL_MAX_MINUTES", ge=1, le=60,
        description="Longest interval, for quiet mailboxes, in minutes; every enabled mailbox "
        "is synced at least this often.",
    )
    busy_items_threshold: int = Field(
        20, alias="BUSY_ITEMS_THRESHOLD", ge=1,
        description="Items moved in a cycle from which a mailbox counts as busy.",
    )
    quiet_cycles_threshold: int = Field(
        3, alias="QUIET_CYCLES_THRESHOLD", ge=1,
        description="Consecutive empty cycles after which a mailbox counts as quiet.",
    )
    lease_seconds: int = Field(
        600, alias="LEASE_SECONDS", ge=30, le=3600,
        description="How long a scheduler lease on a mailbox lasts before another worker may "
        "take it over.",
    )
    sync_queue_name: str = Field(
        "sync-jobs", alias="SYNC_QUEUE_NAME", pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        description="Queue of per-mailbox sync jobs.",
    )
    intent_queue_name: str = Field(
        "intent-retries", alias="INTENT_QUEUE_NAME",
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        description="Queue of add-in actions to retry.",
    )
    transient_retry_limit: int = Field(
        10, alias="TRANSIENT_RETRY_LIMIT", ge=0, le=100,
        description="Consecutive transient failures of a mailbox before it counts as permanent.",
    )
    transient_retry_minutes: int = Field(
        5, alias="TRANSIENT_RETRY_MINUTES", ge=1, le=60,
        description="Minutes between retries of a mailbox after a transient failure.",
    )

    # --- tracking --------------------------------------------------------------------------------
    tracked_category: str = Field(
        "Tracked to Dynamics 365", alias="TRACKED_CATEGORY", min_length=1, max_length=255,
        description="Outlook category that marks tracked items (and tracks them when a user "
        "sets it).",
    )
    default_tracking_option: TrackingOption = Field(
        TrackingOption.RESPONSES_TO_CRM, alias="DEFAULT_TRACKING_OPTION",
        description="Tracking option of new mailboxes.",
    )
    correlate_in_reply_to: bool = Field(
        True, alias="CORRELATE_IN_REPLY_TO",
        description="Correlate replies by In-Reply-To/References.",
    )
    correlate_tracking_token: bool = Field(
        True, alias="CORRELATE_TRACKING_TOKEN",
        description="Correlate by a tracking token in the subject.",
    )
    correlate_conversation: bool = Field(
        True, alias="CORRELATE_CONVERSATION",
        description="Correlate by Exchange conversation id.",
    )
    tracking_token_prefix: str = Field(
        "CRM", alias="TRACKING_TOKEN_PREFIX", pattern=r"^[A-Za-z]{1,20}$",
        description="Prefix of the subject tracking token, e.g. CRM:0001234.",
    )
    tracking_token_digits: int = Field(
        7, alias="TRACKING_TOKEN_DIGITS", ge=3, le=12,
        description="Digits of the subject tracking token.",
    )
    organization_domains: CsvList = Field(
        default_factory=list, alias="ORGANIZATION_DOMAINS",
        description="Comma-separated domains of the organisation; never auto-create records for "
        "them.",
    )
    regarding_tables: CsvList = Field(
        default_factory=lambda: ["contact", "account", "lead", "opportunity", "incident"],
        alias="REGARDING_TABLES",
        description="Comma-separated tables a regarding record may belong to.",
    )
    max_folder_rules: int = Field(
        25, alias="MAX_FOLDER_RULES", ge=0, le=25,
        description="Tracked folders allowed per mailbox (Dynamics allows 25).",
    )
    send_limit_per_minute: int = Field(
        30, alias="SEND_LIMIT_PER_MINUTE", ge=1, le=30,
        description="Messages sent per mailbox per minute (Exchange Online allows 30).",
    )
    page_size: int = Field(
        100, alias="GRAPH_PAGE_SIZE", ge=10, le=1000,
        description="Prefer: odata.maxpagesize for Graph delta and Dataverse lists.",
    )

    # --- add-in API ------------------------------------------------------------------------------
    immediate_deadline_seconds: float = Field(
        10.0, alias="IMMEDIATE_DEADLINE_SECONDS", gt=0, le=120,
        description="Deadline of the immediate attempt of an add-in action; past it the action "
        "is queued and the call answers 202.",
    )
    intent_max_attempts: int = Field(
        5, alias="INTENT_MAX_ATTEMPTS", ge=1, le=20,
        description="Queue attempts of a failed add-in action before the scheduled cycle takes "
        "it over (host.json maxDequeueCount must match).",
    )
    intent_retry_base_seconds: int = Field(
        30, alias="INTENT_RETRY_BASE_SECONDS", ge=1, le=3600,
        description="First retry delay of a failed add-in action; doubles per attempt.",
    )
    max_request_bytes: int = Field(
        65536, alias="MAX_REQUEST_BYTES", ge=1024, le=4 * 1024 * 1024,
        description="Largest accepted HTTP request body, in bytes (larger gets 413).",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: Any, init_settings: Any, env_settings: Any, dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        """Only what `load_settings` passes in: it reads the environment itself, once."""
        return (init_settings,)

    @field_validator("organization_domains", "regarding_tables", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("graph_base_url", "dataverse_url", "entra_authority_host")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL")
        return value.rstrip("/")

    @field_validator("scheduler_schedule")
    @classmethod
    def _ncrontab(cls, value: str) -> str:
        from shared.domain.ncrontab import Schedule  # here: shared.domain imports settings

        Schedule.parse(value)  # ValueError naming the field that is wrong
        return value

    @property
    def dataverse_api_url(self) -> str:
        return f"{self.dataverse_url}/api/data/{self.dataverse_api_version}"

    @property
    def dataverse_scope(self) -> str:
        return f"{self.dataverse_url}/.default"

    @property
    def authority(self) -> str:
        return f"{self.entra_authority_host}/{self.entra_tenant_id}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise SettingsError naming every bad one, a line each."""
    source = {k: v for k, v in (os.environ if environ is None else environ).items()
              if k in _ALIASES}
    settings, field_level = None, []
    try:
        settings = Settings.model_validate(source)
    except ValidationError as error:
        field_level = field_problems(error, Settings.model_fields)
    problems = report(field_level, typed_values(Settings.model_fields, source))
    if problems or settings is None:
        raise SettingsError(problems)
    return settings


_ALIASES = {f.alias for f in Settings.model_fields.values() if f.alias}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (app settings change only with a restart)."""
    return load_settings()


__all__ = [
    "Settings",
    "SettingsError",
    "TrackingOption",
    "get_settings",
    "load_settings",
]
