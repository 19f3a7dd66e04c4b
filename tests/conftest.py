"""Test plugins: each fixture module starts one real dependency (Azurite, the sandbox)."""

pytest_plugins = [
    "tests.fixtures.app",
    "tests.fixtures.sandbox",
    "tests.fixtures.azurite",
]
