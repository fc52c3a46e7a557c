"""Marker of the role tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "molecule: molecule scenarios of the roles, one podman container each, real ELLA (1-3 min each)"
    )
