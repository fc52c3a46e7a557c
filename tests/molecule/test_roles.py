"""`molecule test` of every role that has a scenario (roles/<role>/molecule/default):
converge, idempotence where the role promises it, and the testinfra verify, in one
container of the sandbox host image per role, on ELLA's real release images. The host image
is built here when missing, ELLA's images too (tests/conftest.py).

The scenarios start in the background when the session starts (tests/molecule/scenarios.py,
started by tests/conftest.py); these tests run after the sandbox tests and collect them.
"""

from __future__ import annotations

import pytest

from tests.molecule.scenarios import ROLES, TIMEOUT

pytestmark = pytest.mark.molecule

# Lines of molecule's output shown when a scenario fails: the failed task and the recap.
TAIL_LINES = 150


@pytest.mark.parametrize("role", ROLES)
def test_role_scenario(role: str, molecule_scenarios) -> None:
    outcome = molecule_scenarios.result(role)
    tail = "\n".join(outcome.output.splitlines()[-TAIL_LINES:])
    if outcome.returncode is None:
        pytest.fail(f"molecule test of {role} took over {TIMEOUT} s:\n{tail}", pytrace=False)
    if outcome.returncode != 0:
        pytest.fail(f"molecule test of {role} exited {outcome.returncode}:\n{tail}", pytrace=False)
