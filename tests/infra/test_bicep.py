"""The Bicep deployment: it parses, follows the house rules, and sets exactly the app settings
the app reads (shared/settings.py) plus a short, justified list the Functions host reads."""

from __future__ import annotations

import json
import re

import pytest

from shared.settings import Settings
from tests.infra.bicep import (
    BICEP_DIR,
    ROOT,
    app_settings,
    bicep_files,
    get_path,
    is_interpolated,
    literal,
    modules,
    params,
    parse,
    problems,
    properties,
    resources,
    string_prefix,
    text,
    walk,
)

MAIN = BICEP_DIR / "main.bicep"
FUNCTION_APP = BICEP_DIR / "modules" / "functionapp.bicep"
STORAGE = BICEP_DIR / "modules" / "storage.bicep"
KEY_VAULT = BICEP_DIR / "modules" / "keyvault.bicep"
MONITORING = BICEP_DIR / "modules" / "monitoring.bicep"
ROLES = BICEP_DIR / "modules" / "roles.bicep"

# App settings the Functions host reads and the app does not. Keep this short: every other
# name must be the alias of a field of shared.settings.Settings.
PLATFORM_SETTINGS = {
    # where the host sends telemetry (host-level Application Insights integration)
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    # Entra-authenticated ingestion with the user-assigned identity (local auth is off)
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

ALIASES = {field.alias: field for field in Settings.model_fields.values() if field.alias}
REQUIRED = {alias for alias, field in ALIASES.items() if field.is_required()}

ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}

FILES = bicep_files()


def _id(path):
    return str(path.relative_to(BICEP_DIR))


def _one(file, resource_type_prefix):
    found = [r for r in resources(parse(file)) if r.type.startswith(resource_type_prefix)]
    assert len(found) == 1, f"{_id(file)}: expected one {resource_type_prefix} resource"
    return found[0]


# --- the files ------------------------------------------------------------------------------


def test_the_deployment_files_exist():
    for path in (MAIN, FUNCTION_APP, STORAGE, KEY_VAULT, MONITORING, ROLES):
        assert path.is_file(), path


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_parses_without_errors(path):
    tree = parse(path)
    assert not problems(tree), f"{_id(path)}: {problems(tree)}"


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_every_param_is_described_required_or_optional(path):
    declared = params(parse(path))
    for param in declared.values():
        where = f"{_id(path)}: param {param.name}"
        assert param.description, f"{where} has no @description"
        expected = "Required. " if param.default is None else "Optional. "
        assert param.description.startswith(expected), f"{where}: description starts {expected!r}"


def test_module_paths_exist():
    for path in FILES:
        for symbol, module_path in modules(parse(path)):
            assert (path.parent / module_path).is_file(), f"{_id(path)}: module {symbol}"


def test_every_module_param_without_default_is_passed():
    for path in FILES:
        tree = parse(path)
        for node in tree.root_node.named_children:
            if node.type != "module_declaration":
                continue
            target = path.parent / str(literal(node.named_children[1]))
            body = node.named_children[-1]
            passed = set(properties(get_path(body, "params")).keys())
            needed = {p.name for p in params(parse(target)).values() if p.default is None}
            declared = set(params(parse(target)))
            assert needed <= passed, f"{_id(path)} -> {_id(target)}: missing {needed - passed}"
            assert passed <= declared, f"{_id(path)} -> {_id(target)}: unknown {passed - declared}"


# --- secure defaults ------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_role_assignments_are_named_guid_of_scope_principal_role(path):
    for resource in resources(parse(path)):
        if not resource.type.startswith("Microsoft.Authorization/roleAssignments@"):
            continue
        name = properties(resource.body)["name"]
        assert name.type == "call_expression" and text(name.children[0]) == "guid", text(name)
        args = [a for a in name.children[1].named_children]
        assert len(args) == 3, f"guid(scope.id, principalId, roleDefinitionId): {text(name)}"
        scope = properties(resource.body)["scope"]
        assert text(args[0]) == f"{text(scope)}.id", f"guid(scope.id, ...): {text(name)}"
        body = properties(resource.body)["properties"]
        assert text(args[1]) == text(properties(body)["principalId"])
        assert text(args[2]) == text(properties(body)["roleDefinitionId"])


def test_the_identity_gets_the_roles_it_needs():
    source = ROLES.read_text()
    for role, role_id in ROLE_IDS.items():
        assert role_id in source, f"roles.bicep does not assign {role}"


def test_storage_allows_no_shared_key_and_no_public_blobs():
    account = _one(STORAGE, "Microsoft.Storage/storageAccounts@")
    props = get_path(account.body, "properties")
    assert literal(properties(props)["allowSharedKeyAccess"]) is False
    assert literal(properties(props)["allowBlobPublicAccess"]) is False
    assert literal(properties(props)["minimumTlsVersion"]) == "TLS1_2"
    assert literal(properties(props)["supportsHttpsTrafficOnly"]) is True


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_no_account_keys_anywhere(path):
    for node in walk(parse(path).root_node):
        if node.type == "call_expression":
            assert text(node.children[0]) not in ("listKeys", "listkeys"), f"{_id(path)}: listKeys"
        if node.type == "string_content":
            assert "AccountKey=" not in text(node), f"{_id(path)}: a connection string with a key"


def test_key_vault_uses_rbac_soft_delete_and_purge_protection():
    vault = _one(KEY_VAULT, "Microsoft.KeyVault/vaults@")
    props = properties(get_path(vault.body, "properties"))
    assert literal(props["enableRbacAuthorization"]) is True
    assert literal(props["enableSoftDelete"]) is True
    assert literal(props["enablePurgeProtection"]) is True


def test_application_insights_takes_only_entra_authenticated_telemetry():
    component = _one(MONITORING, "Microsoft.Insights/components@")
    value = properties(get_path(component.body, "properties"))["DisableLocalAuth"]
    resolved = literal(value)
    if resolved is None:  # a parameter
        resolved = literal(params(parse(MONITORING))[text(value)].default)
    assert resolved is True


def test_function_app_is_flex_consumption_python_with_identity_deployment():
    plan = _one(FUNCTION_APP, "Microsoft.Web/serverfarms@")
    assert literal(get_path(plan.body, "sku", "tier")) == "FlexConsumption"
    assert literal(get_path(plan.body, "sku", "name")) == "FC1"
    site = _one(FUNCTION_APP, "Microsoft.Web/sites@")
    config = get_path(site.body, "properties", "functionAppConfig")
    assert literal(get_path(config, "runtime", "name")) == "python"
    version = get_path(config, "runtime", "version")
    version_value = literal(version) or literal(params(parse(FUNCTION_APP))[text(version)].default)
    assert version_value == "3.11"
    auth = get_path(config, "deployment", "storage", "authentication")
    assert literal(get_path(auth, "type")) == "UserAssignedIdentity"
    assert literal(get_path(site.body, "properties", "httpsOnly")) is True
    assert literal(get_path(site.body, "identity", "type")) == "UserAssigned"
    # Key Vault references resolve with the user-assigned identity, not a system one
    assert get_path(site.body, "properties", "keyVaultReferenceIdentity") is not None


# --- app settings against the settings model ------------------------------------------------


@pytest.fixture(scope="module")
def settings_in_bicep():
    return app_settings(parse(FUNCTION_APP))


def test_the_settings_model_has_required_settings():
    # guards the test below against a model that silently lost its required fields
    assert {"DATAVERSE_URL", "ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "API_AUDIENCE"} <= REQUIRED


def test_every_required_setting_is_set_unconditionally(settings_in_bicep):
    missing = REQUIRED - set(settings_in_bicep)
    assert not missing, f"required settings missing from the Bicep app settings: {sorted(missing)}"
    conditional = sorted(n for n in REQUIRED if settings_in_bicep[n].conditional)
    assert not conditional, f"required settings set only under a condition: {conditional}"


def test_no_setting_the_app_does_not_read(settings_in_bicep):
    unknown = set(settings_in_bicep) - set(ALIASES) - PLATFORM_SETTINGS
    assert not unknown, f"app settings nothing reads (typo?): {sorted(unknown)}"


def test_platform_allow_list_is_not_shadowing_the_model():
    assert not PLATFORM_SETTINGS & set(ALIASES)


def test_storage_is_identity_based(settings_in_bicep):
    assert "AzureWebJobsStorage" not in settings_in_bicep, "no storage connection string in Azure"
    for name in (
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    ):
        assert name in settings_in_bicep and not settings_in_bicep[name].conditional, name
    assert literal(settings_in_bicep["AzureWebJobsStorage__credential"].value) == "managedidentity"


def test_client_secret_is_a_key_vault_reference(settings_in_bicep):
    value = settings_in_bicep["ENTRA_CLIENT_SECRET"].value
    assert value.type == "string" and is_interpolated(value)
    assert string_prefix(value) == "@Microsoft.KeyVault(SecretUri="
    assert text(value).endswith(")'")


def test_application_insights_authentication_names_the_identity(settings_in_bicep):
    value = settings_in_bicep["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].value
    assert string_prefix(value) == "ClientId="
    assert text(value).endswith(";Authorization=AAD'")


def test_no_plain_secrets_in_settings(settings_in_bicep):
    params_ = params(parse(FUNCTION_APP))
    for setting in settings_in_bicep.values():
        for node in walk(setting.value):
            if node.type != "identifier" or node.parent is None:
                continue
            if node.parent.type == "member_expression":
                continue
            param = params_.get(text(node))
            if param is not None:
                assert "secure" not in param.decorators, f"{setting.name} holds a @secure() value"


def test_binding_expressions_of_function_app_resolve(settings_in_bicep):
    """Every %NAME% in function_app.py must be an app setting, or the host will not start."""
    app = ROOT / "function_app.py"
    names = set(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", app.read_text()))
    missing = {n for n in names if n not in settings_in_bicep or settings_in_bicep[n].conditional}
    assert not missing, f"binding expressions without an unconditional app setting: {missing}"


@pytest.mark.parametrize(
    ("param_name", "field"),
    [
        ("syncQueueName", "sync_queue_name"),
        ("intentQueueName", "intent_queue_name"),
        ("schedulerSchedule", "scheduler_schedule"),
    ],
)
def test_main_defaults_match_the_settings_model(param_name, field):
    param = params(parse(MAIN))[param_name]
    assert literal(param.default) == Settings.model_fields[field].default


# --- azd ------------------------------------------------------------------------------------


def test_main_parameters_file_names_only_main_params():
    declared = params(parse(MAIN))
    values = json.loads((BICEP_DIR / "main.parameters.json").read_text())["parameters"]
    assert set(values) <= set(declared), set(values) - set(declared)
    required = {name for name, p in declared.items() if p.default is None}
    assert required <= set(values), f"azd would prompt for {required - set(values)}"


def test_azure_yaml_deploys_the_function_app_with_this_bicep():
    import yaml

    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    infra = config["infra"]
    assert infra.get("provider", "bicep") == "bicep"
    assert (ROOT / infra["path"] / f"{infra.get('module', 'main')}.bicep").resolve() == MAIN
    ((service_name, service),) = config["services"].items()
    assert service["host"] == "function"
    assert service["language"] in ("python", "py")
    assert (ROOT / service["project"]).resolve() == ROOT
    site = _one(FUNCTION_APP, "Microsoft.Web/sites@")
    tag_param = params(parse(FUNCTION_APP))["azdServiceName"]
    assert "azd-service-name" in text(get_path(site.body, "tags"))
    assert literal(tag_param.default) == service_name


# --- the package ----------------------------------------------------------------------------


def _ignored(patterns, path):
    """gitignore-style match of a top-level path (enough for .funcignore's plain patterns)."""
    from fnmatch import fnmatch

    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if fnmatch(path, pattern) or fnmatch(path.split("/")[0], pattern):
            result = not negate
    return result


def test_funcignore_leaves_development_files_out_of_the_package():
    lines = (ROOT / ".funcignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in (
        "tests",
        "sandbox",
        "devhost",
        "bench",
        "docs",
        "infra",
        "tools",
        ".venv",
        "node_modules",
        ".git",
        ".azure",
        "local.settings.json",
    ):
        assert _ignored(patterns, path), f".funcignore should leave out {path}"
    for path in (
        "function_app.py",
        "host.json",
        "requirements.txt",
        "shared",
        "shared/settings.py",
    ):
        assert not _ignored(patterns, path), f".funcignore must keep {path}"
