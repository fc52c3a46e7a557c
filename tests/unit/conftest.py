"""Markers of the unit tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lint: ansible-lint (production profile) and yamllint over the repository"
    )
