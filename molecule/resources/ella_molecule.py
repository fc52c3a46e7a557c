"""What the testinfra tests of the roles' molecule scenarios share.

Each scenario's verifier puts this directory on PYTHONPATH (verifier.env in molecule.yml).
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import testinfra.utils.ansible_runner


@cache
def _inventory() -> testinfra.utils.ansible_runner.AnsibleRunner:
    return testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])


def instances() -> list[str]:
    """The scenario's containers as testinfra hosts (set them as `testinfra_hosts`).

    `podman exec` directly, as root: the tests look at the host as its administrator would
    (Ansible reaches it as deploy, over SSH through podman-ssh-proxy).
    """
    return [f"podman://{name}" for name in _inventory().get_hosts("all")]


def inventory_vars(host: Any) -> dict[str, Any]:
    """The instance's variables as the scenario's inventory sets them (not templated)."""
    return _inventory().get_variables(host.backend.hostname)


def processes(host: Any) -> list[dict[str, Any]]:
    """Every process on the instance: pid, ppid, user, args. (testinfra's host.process splits
    ps's columns on spaces, and Singularity's runtime parent has spaces in its name.)"""
    found = []
    for line in host.check_output("ps -eww -o pid=,ppid=,user:32=,args=").splitlines():
        pid, ppid, user, args = (line.split(None, 3) + [""])[:4]
        found.append({"pid": int(pid), "ppid": int(ppid), "user": user, "args": args})
    return found


def log_tail(host: Any, path: str, lines: int = 40) -> str:
    """The end of a log on the instance, for the message of a failed assertion."""
    result = host.run("tail -n %s %s", str(lines), path)
    return f"\n--- last {lines} lines of {path} ---\n{result.stdout or result.stderr}"


def ella_logs(host: Any) -> str:
    """supervisord's and ELLA's logs on the instance (named after its short hostname)."""
    log_dir = inventory_vars(host)["ella_root"] + "/ella-prod/logs"
    hostname = host.check_output("hostname -s")
    return log_tail(host, f"{log_dir}/supervisord-{hostname}.log") + log_tail(host, f"{log_dir}/ella-{hostname}.log")


def ella_api_config(host: Any) -> dict[str, Any]:
    """ELLA's /api/v1/config/ on the instance, the endpoint the health gate reads."""
    answer = host.run("curl --silent --show-error --fail http://127.0.0.1:3114/api/v1/config/")
    assert answer.rc == 0, answer.stderr + ella_logs(host)
    return json.loads(answer.stdout)
