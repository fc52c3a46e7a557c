"""The playbooks on their own, as AWX / Automation Platform runs them: no CLI, same safety.

ansible-playbook straight from the repository (project root as the AWX project, the
inventory as an inventory source): the lock, the single-active guard and the audit record
live in the playbooks, so they hold without ella-deploy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


from tests.conftest import ROOT, run_cli
from tests.sandbox.test_guard import ella_processes, start_by_hand
from tests.sandbox_access import PROD_ROOT


LOCK = f"{PROD_ROOT}/deploy/lock"


def playbook(*args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook as an AWX job template runs it: from the project's root (its ansible.cfg)."""
    binary = Path(sys.executable).parent / "ansible-playbook"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run([str(binary), "-i", str(ROOT / "inventories" / "sandbox"), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_release_playbook_without_the_cli_locks_guards_and_audits(prod):
    release = ["ansible/playbooks/release.yml", "-e", "ella_release_request=1.16.6"]
    # A hotfix (no staging record needed): 1.16.5's image published again as 1.16.6.
    shutil.copyfile(prod.storage("archive/releases/ella-release-v1.16.5.sif"),
                    prod.storage("archive/releases/ella-release-v1.16.6.sif"))
    prod.exec("p22-ella-01", f"chown ella:ella {PROD_ROOT}/archive/releases/ella-release-v1.16.6.sif")

    # A held lock (its holder renewing it) refuses it.
    prod.exec("p22-ella-01", f"mkdir -p {LOCK} && echo '{{\"operator\": \"kari@laptop\", \"since\": "
                             f"\"2026-11-25T10:00:00Z\", \"command\": \"ella-deploy release\", \"token\": \"x\", "
                             f"\"lease_seconds\": 90}}' > {LOCK}/holder.json && touch {LOCK}/heartbeat", user="ella")
    locked = playbook(*release)
    prod.exec("p22-ella-01", f"rm -rf {LOCK}", user="ella")
    assert locked.returncode != 0 and "deploy lock held by kari@laptop" in locked.stdout, locked.stdout[-2500:]

    # A second ELLA started by hand on the failover host: the guard refuses before any change.
    start_by_hand(prod, "p22-ella-fo-01")
    guarded = playbook(*release)
    stopped = run_cli("--inventory", "sandbox", "stop", "--host", "p22-ella-fo-01")
    assert stopped.returncode == 0, stopped.stderr
    assert guarded.returncode != 0 and "CONFLICT" in guarded.stdout
    assert not [r for r in prod.audit_records() if r.get("kind") == "release"]
    assert prod.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip().endswith("v1.16.5.sif")

    done = playbook(*release)
    assert done.returncode == 0, done.stdout[-3000:]
    [record] = [r for r in prod.audit_records() if r.get("kind") == "release"]
    assert (record["to_version"], record["outcome"], record["change_kind"]) == ("1.16.6", "success", "patch")
    assert record["operator"].split("@")[0] == (os.environ.get("USER") or "unknown")
    assert record["command"].startswith("ansible-playbook")
    assert prod.exec("p22-ella-01", f"test -e {LOCK}", check=False).rc != 0
    assert prod.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip().endswith("v1.16.6.sif")
    assert ella_processes(prod, "p22-ella-01") and not ella_processes(prod, "p22-ella-fo-01")
