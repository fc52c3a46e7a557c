"""`molecule test` of every role that has a scenario (roles/<role>/molecule/default):
converge, idempotence where the role promises it, and the testinfra verify, in one
container of the sandbox host image per role. The image is built here when missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ella_deploy.sandbox import Sandbox, image_tag

pytestmark = pytest.mark.molecule

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLES = sorted(path.parents[2].name for path in (ROOT / "roles").glob("*/molecule/default/molecule.yml"))
# Lines of molecule's output shown when a scenario fails: the failed task and the recap.
TAIL_LINES = 150


@pytest.fixture(scope="session")
def host_image() -> str:
    """The sandbox host image, the platform of every scenario (molecule.yml reads it from
    ELLA_MOLECULE_IMAGE)."""
    tag = image_tag()
    Sandbox()._ensure_image(tag)
    return tag


@pytest.mark.parametrize("role", ROLES)
def test_role_scenario(role: str, host_image: str) -> None:
    role_dir = ROOT / "roles" / role
    environment = {
        **os.environ,
        "ELLA_MOLECULE_IMAGE": host_image,
        "MOLECULE_PROJECT_DIRECTORY": str(role_dir),
        # molecule runs ansible-playbook, ansible-inventory and pytest from PATH.
        "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    try:
        result = subprocess.run(
            [str(VENV_BIN / "molecule"), "test"],
            cwd=role_dir,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.output.decode(errors="replace") if isinstance(expired.output, bytes) else expired.output
        tail = "\n".join((output or "").splitlines()[-TAIL_LINES:])
        # The next `molecule test` of this role starts with destroy, which removes the container.
        pytest.fail(f"molecule test of {role} took over 600 s:\n{tail}", pytrace=False)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-TAIL_LINES:])
        pytest.fail(f"molecule test of {role} exited {result.returncode}:\n{tail}", pytrace=False)
