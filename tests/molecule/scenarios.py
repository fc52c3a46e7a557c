"""Runs the roles' molecule scenarios in the background while the other tests run.

The scenarios (one to three minutes each: real ELLA, started in the scenario's own
container) touch nothing the sandbox tests use (their containers have no network), so the
session starts them at once in a thread and each scenario's test only collects its result:
the suite's wall time is the longer of the two streams, not their sum. ELLA_MOLECULE_JOBS
sets how many run at a time (default 1: the sandbox tests are the other stream on a 2-core
machine). They run at a lower priority (`nice -n 10`, which the scenario's container inherits
through podman and conmon): they start with the session, while `sandbox up` needs both cores,
and the sandbox tests then keep about one core busy (Ansible's controller and the hosts'
modules take turns), which leaves the other to them. The nice value counts only with the
kernel's autogroup scheduling off, as scripts/test turns it for its run: conmon starts each
container in a session of its own, which autogroup weighs equally with the sandbox's whatever
its nice value (`sandbox up` took 186 s beside the other lanes with it on, 96 s with it off,
65 s alone).

ELLA's release images come from testbed/ella-image/build.py's cache ($ELLA_IMAGE_CACHE, else
.cache/ella-images), as the sandbox's do: ensure_ella_images() has them built before the
stream starts, so that no scenario builds them at the same time as `sandbox up` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLES = sorted(path.parents[2].name for path in (ROOT / "roles").glob("*/molecule/default/molecule.yml"))
TIMEOUT = 600


@dataclass(frozen=True)
class Outcome:
    role: str
    returncode: int | None  # None: timed out
    output: str
    seconds: float


def ensure_ella_images() -> None:
    """ELLA's releases that the sandbox stages (the scenarios stage some of them), built unless
    cached: instant when they are."""
    from ella_deploy.sandbox import STAGED_VERSIONS, build_ella_images

    build_ella_images(STAGED_VERSIONS)


def run(role: str, image: str) -> Outcome:
    role_dir = ROOT / "roles" / role
    environment = {
        **os.environ,
        "ELLA_MOLECULE_IMAGE": image,
        "MOLECULE_PROJECT_DIRECTORY": str(role_dir),
        # molecule runs ansible-playbook, ansible-inventory and pytest from PATH.
        "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    started = time.monotonic()
    try:
        done = subprocess.run(["nice", "-n", "10", str(VENV_BIN / "molecule"), "test"], cwd=role_dir, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as expired:
        output = expired.output.decode(errors="replace") if isinstance(expired.output, bytes) else expired.output
        # The next `molecule test` of this role starts with destroy, which removes the container.
        return Outcome(role, None, output or "", time.monotonic() - started)
    return Outcome(role, done.returncode, done.stdout, time.monotonic() - started)


class Scenarios:
    """Every scenario submitted at once; results by role."""

    def __init__(self, image: str, roles: list[str], jobs: int | None = None) -> None:
        jobs = jobs or int(os.environ.get("ELLA_MOLECULE_JOBS") or 1)
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="molecule")
        self._futures: dict[str, Future[Outcome]] = {role: self._pool.submit(run, role, image) for role in roles}

    def result(self, role: str) -> Outcome:
        return self._futures[role].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
