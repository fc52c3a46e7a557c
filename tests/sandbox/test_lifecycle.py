"""`sandbox up` heals and is idempotent; `sandbox down` leaves nothing behind."""

from __future__ import annotations

import subprocess

import pytest

from ella_deploy import sandbox as sandbox_module
from tests.conftest import run_cli


def container_ids() -> dict[str, str]:
    listed = subprocess.run(
        ["podman", "ps", "--all", "--filter", f"label={sandbox_module.LABEL}", "--format", "{{.Names}} {{.ID}}"],
        capture_output=True, text=True, check=True,
    )
    return dict(line.split() for line in listed.stdout.splitlines())


def ella_pid(sandbox) -> str:
    return sandbox.exec("p22-ella-01", "pgrep -f '^Singularity runtime parent'").stdout.strip()


def test_up_again_changes_nothing_that_runs(fresh):
    # Start from a known state: earlier modules may leave ELLA stopped or on the failover host.
    sandbox = fresh
    before_ids, before_pid = container_ids(), ella_pid(sandbox)
    run_cli("sandbox", "up", check=True)
    assert container_ids() == before_ids
    assert ella_pid(sandbox) == before_pid


def test_up_heals_a_stopped_host(sandbox):
    subprocess.run(["podman", "stop", "--time", "0", "ella-sandbox-p22-ella-fo-01"], check=True, capture_output=True)
    states = {row["host"]: row["state"] for row in sandbox_module.Sandbox().status()}
    assert states["p22-ella-fo-01"] == "exited"
    run_cli("sandbox", "up", check=True)
    assert sandbox.ssh("p22-ella-fo-01", "hostname").stdout.strip() == "p22-ella-fo-01"
    # supervisord came back on the restarted host, ELLA did not (autostart=false).
    processes = sandbox.exec("p22-ella-fo-01", "ps -eo args").stdout
    assert "supervisord" in processes
    assert "Singularity runtime parent" not in processes and "api.main:app" not in processes


@pytest.mark.destroys_sandbox
def test_down_leaves_nothing_behind(sandbox):
    run_cli("sandbox", "down", check=True)
    assert container_ids() == {}
    network = subprocess.run(["podman", "network", "exists", sandbox_module.NETWORK], capture_output=True)
    assert network.returncode != 0
    assert not sandbox.state_dir.exists()
