"""Fixtures of the guide scenarios (the helpers live in scenarios_helpers.py)."""

from scenarios_helpers import at_repo_root, dsft  # noqa: F401 - fixtures for the scenarios
