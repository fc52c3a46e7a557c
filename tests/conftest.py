"""Shared fixtures. Sandbox tests share one sandbox per test session: brought up if absent,
removed at the end if this session made it (keep it with ELLA_SANDBOX_KEEP=1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox_access import SandboxAccess

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ella_deploy"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that take the sandbox down run last, after everything that needs it.
    items.sort(key=lambda item: item.get_closest_marker("destroys_sandbox") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "destroys_sandbox: takes the sandbox down; runs last")


def run_cli(*args: str, check: bool = False, timeout: float = 600, input: str | None = None,  # noqa: A002
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """ella-deploy as an operator runs it, in a subprocess (stdin: `input`, else none;
    `env`: added to this process's environment)."""
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                            input=input, stdin=None if input is not None else subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"ella-deploy {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def sandbox() -> SandboxAccess:
    access = SandboxAccess()
    existed = access.any_container()
    up = run_cli("sandbox", "up", timeout=900)
    if up.returncode != 0:
        pytest.fail(f"sandbox up failed:\n{up.stdout}\n{up.stderr}")
    yield access
    if not existed and not os.environ.get("ELLA_SANDBOX_KEEP"):
        run_cli("sandbox", "down")
