"""ansible-lint (production profile) and yamllint over the repository, as CI runs them.

A failure shows every finding, one per line, so it can be fixed without rerunning by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lint

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# What yamllint checks beyond what ansible-lint reads (inventories, molecule scenarios).
YAML_PATHS = ("roles", "ansible", "inventories", "molecule", "testbed/playbooks")


def run_linter(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The virtualenv's bin first: ansible-lint runs ansible-playbook --syntax-check from PATH.
    environment = {**os.environ, **(env or {}), "NO_COLOR": "1"}
    environment["PATH"] = os.pathsep.join([str(VENV_BIN), environment.get("PATH", "")])
    return subprocess.run(
        [str(VENV_BIN / command[0]), *command[1:]],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    """Fail with the linter's findings, as it printed them."""
    if result.returncode != 0:
        pytest.fail(f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}".rstrip(), pytrace=False)


def test_ansible_lint_production_profile() -> None:
    # ansible.cfg puts roles/ and the project's modules on Ansible's paths, as for a run.
    result = run_linter(
        "ansible-lint", "--profile", "production", "--nocolor", "--format", "pep8",
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
    )
    assert_clean(result)


def test_yamllint() -> None:
    paths = [path for path in YAML_PATHS if (ROOT / path).exists()]
    result = run_linter("yamllint", "--strict", "--format", "parsable", *paths)
    assert_clean(result)
