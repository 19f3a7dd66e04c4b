"""Test plugins: each fixture module starts one real dependency (Azurite, the sandbox) or
builds on them (the function-app harness)."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.sandbox",
    "tests.fixtures.app",
]
