"""Settings: defaults, validation with one line naming the setting, and the generated doc."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, TrackingOption, load_settings
from tools.settings_doc import PAGE, render

BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "DATAVERSE_URL": "https://contoso.crm.dynamics.com",
    "ENTRA_TENANT_ID": "8f1f4a8e-7a3b-4c5e-9d1f-2b6c0a9e5d11",
    "ENTRA_CLIENT_ID": "3b7d9c1e-0000-4000-8000-00000000c001",
    "ENTRA_CLIENT_SECRET": "x",
    "API_AUDIENCE": "api://sss",
}


def test_defaults_follow_dynamics_cadence() -> None:
    settings = load_settings(BASE)
    assert (settings.sync_interval_min_minutes, settings.sync_interval_minutes,
            settings.sync_interval_max_minutes) == (2, 5, 12)
    assert settings.scheduler_schedule == "0 */1 * * * *"
    assert settings.default_tracking_option is TrackingOption.RESPONSES_TO_CRM
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.dataverse_api_url == "https://contoso.crm.dynamics.com/api/data/v9.2"


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"SYNC_INTERVAL_MINUTES": "five"}, "SYNC_INTERVAL_MINUTES"),
        ({"SYNC_INTERVAL_MINUTES": "30"}, "SYNC_INTERVAL_MINUTES"),
        ({"DATAVERSE_URL": "http://insecure.example"}, "DATAVERSE_URL"),
        ({"SCHEDULER_SCHEDULE": "*/5 * * * *"}, "SCHEDULER_SCHEDULE"),
        ({"SCHEDULER_SCHEDULE": "0 61 * * * *"}, "SCHEDULER_SCHEDULE"),
        ({"SCHEDULER_SCHEDULE": "0 0 0 31 Feb *"}, "SCHEDULER_SCHEDULE"),
        ({"DEFAULT_TRACKING_OPTION": "some"}, "DEFAULT_TRACKING_OPTION"),
        ({"SYNC_QUEUE_NAME": "Bad_Name"}, "SYNC_QUEUE_NAME"),
        ({"ENTRA_CLIENT_SECRET": ""}, "ENTRA_CLIENT_SECRET"),
        ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage"),
    ],
)
def test_bad_setting_gives_one_line_naming_it(override: dict[str, str], setting: str) -> None:
    env = {**BASE, **override}
    env = {k: v for k, v in env.items() if v != ""}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Invalid app setting {setting}")


@pytest.mark.parametrize("missing", ["DATAVERSE_URL", "ENTRA_TENANT_ID", "ENTRA_CLIENT_ID",
                                     "API_AUDIENCE"])
def test_missing_required_setting_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError, match=f"^Invalid app setting {missing}: Field required$"):
        load_settings(env)


def test_lists_are_comma_separated() -> None:
    settings = load_settings({**BASE, "ORGANIZATION_DOMAINS": "contoso.com, fabrikam.com"})
    assert settings.organization_domains == ["contoso.com", "fabrikam.com"]


def test_settings_page_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), \
        "docs/settings.md is stale: run python -m tools.settings_doc"
