"""Test plugins: each fixture module starts one real dependency (Azurite, the sandbox)."""

pytest_plugins = [
]
