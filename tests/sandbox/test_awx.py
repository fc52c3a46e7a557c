"""The playbooks on their own, as AWX / Automation Platform runs them: no CLI, same safety.

ansible-playbook straight from the repository (project root as the AWX project, the
inventory as an inventory source): the lock, the single-active guard and the audit record
live in the playbooks, so they hold without ella-deploy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.sandbox.test_guard import ella_processes, start_by_hand
from tests.sandbox_access import PROD_ROOT

pytestmark = pytest.mark.sandbox

LOCK = f"{PROD_ROOT}/deploy/lock"


def playbook(*args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook as an AWX job template runs it: from the project's root (its ansible.cfg)."""
    binary = Path(sys.executable).parent / "ansible-playbook"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run([str(binary), "-i", str(ROOT / "inventories" / "sandbox"), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_release_playbook_without_the_cli_locks_guards_and_audits(prod):
    release = ["ansible/playbooks/release.yml", "-e", "ella_release_request=2.0.3"]
    # Build a patch release (a hotfix: no staging record needed) next to the staged ones.
    subprocess.run([sys.executable, str(ROOT / "testbed" / "build_standin.py"), "--out",
                    str(prod.state_dir / "storage" / "sandbox" / "archive" / "releases"), "2.0.3"],
                   check=True, capture_output=True)
    prod.exec("p22-ella-01", f"chown ella:ella {PROD_ROOT}/archive/releases/ella-release-2.0.3.sif*")

    # A held lock refuses it.
    prod.exec("p22-ella-01", f"mkdir -p {LOCK} && echo '{{\"operator\": \"kari@laptop\", \"since\": "
                             f"\"2026-11-25T10:00:00Z\", \"command\": \"ella-deploy release\", \"token\": \"x\"}}' "
                             f"> {LOCK}/holder.json", user="ella")
    locked = playbook(*release)
    prod.exec("p22-ella-01", f"rm -rf {LOCK}", user="ella")
    assert locked.returncode != 0 and "deploy lock held by kari@laptop" in locked.stdout, locked.stdout[-2500:]

    # A second ELLA started by hand on the failover host: the guard refuses before any change.
    start_by_hand(prod, "p22-ella-fo-01", port=3115)
    guarded = playbook(*release)
    prod.exec("p22-ella-fo-01", "pkill -f '[.]sif run'", user="ella")
    assert guarded.returncode != 0 and "CONFLICT" in guarded.stdout
    assert not [r for r in prod.audit_records() if r.get("kind") == "release"]
    assert prod.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip().endswith("2.0.0.sif")

    done = playbook(*release)
    assert done.returncode == 0, done.stdout[-3000:]
    [record] = [r for r in prod.audit_records() if r.get("kind") == "release"]
    assert (record["to_version"], record["outcome"], record["change_kind"]) == ("2.0.3", "success", "patch")
    assert record["operator"].split("@")[0] == (os.environ.get("USER") or "unknown")
    assert record["command"].startswith("ansible-playbook")
    assert prod.exec("p22-ella-01", f"test -e {LOCK}", check=False).rc != 0
    assert [line for line in ella_processes(prod, "p22-ella-01") if "2.0.3.sif run" in line]
    assert not ella_processes(prod, "p22-ella-fo-01")
