"""Settings: defaults, validation with one line naming the setting, and the generated doc."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


REQUIRED = ("DATAVERSE_URL", "ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "API_AUDIENCE")


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return list(caught.value.problems)


def test_every_missing_setting_is_named_at_once_one_line_each() -> None:
    env = {k: v for k, v in BASE.items() if k not in REQUIRED}
    lines = problems_of(env)
    assert lines == [f"Invalid app setting {name}: Field required" for name in REQUIRED]


def test_field_and_cross_setting_problems_come_together() -> None:
    env = {k: v for k, v in BASE.items()
           if k not in ("DATAVERSE_URL", "ENTRA_CLIENT_SECRET", "AzureWebJobsStorage")}
    env.update({"SYNC_INTERVAL_MIN_MINUTES": "20", "GRAPH_PAGE_SIZE": "many"})
    named = [line.split(":")[0].removeprefix("Invalid app setting ")
             for line in problems_of(env)]
    assert sorted(named) == sorted(["DATAVERSE_URL", "GRAPH_PAGE_SIZE",
                                    "SYNC_INTERVAL_MIN_MINUTES", "AzureWebJobsStorage",
                                    "ENTRA_CLIENT_SECRET"])


def test_minimum_above_maximum_names_those_two_not_the_normal_interval() -> None:
    lines = problems_of({**BASE, "SYNC_INTERVAL_MIN_MINUTES": "20",
                         "SYNC_INTERVAL_MAX_MINUTES": "12"})
    assert lines == ["Invalid app setting SYNC_INTERVAL_MIN_MINUTES: 20 is above "
                     "SYNC_INTERVAL_MAX_MINUTES (12)"]
    assert "SYNC_INTERVAL_MINUTES:" not in lines[0]


@pytest.mark.parametrize(("override", "expected"), [
    ({"SYNC_INTERVAL_MINUTES": "1"},
     "Invalid app setting SYNC_INTERVAL_MINUTES: 1 is below SYNC_INTERVAL_MIN_MINUTES (2)"),
    ({"SYNC_INTERVAL_MINUTES": "13"},
     "Invalid app setting SYNC_INTERVAL_MINUTES: 13 is above SYNC_INTERVAL_MAX_MINUTES (12)"),
])
def test_normal_interval_outside_the_bounds_names_it(override: dict[str, str],
                                                     expected: str) -> None:
    assert problems_of({**BASE, **override}) == [expected]


@given(missing=st.sets(st.sampled_from(REQUIRED)),
       bad_ints=st.sets(st.sampled_from(["SYNC_INTERVAL_MINUTES", "BUSY_ITEMS_THRESHOLD",
                                         "LEASE_SECONDS", "RETRY_MAX_ATTEMPTS"])))
@settings(max_examples=40, deadline=None)
def test_each_bad_setting_is_named_exactly_once(missing: set[str], bad_ints: set[str]) -> None:
    env = {k: v for k, v in BASE.items() if k not in missing}
    env.update({name: "not a number" for name in bad_ints})
    if not missing and not bad_ints:
        load_settings(env)
        return
    named = [line.split(":")[0].removeprefix("Invalid app setting ")
             for line in problems_of(env)]
    assert sorted(named) == sorted(missing | bad_ints)
