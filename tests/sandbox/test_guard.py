"""Never two active hosts: status, start/stop and failover against real faults — a second
ELLA started by hand, a stray process, a paused (unreachable) host, a standby's session
in the database, two commands at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli
from tests.sandbox.conftest import api
from tests.sandbox_access import PROD_ROOT

pytestmark = pytest.mark.sandbox

LINK = f"{PROD_ROOT}/ella-prod/ella.sif"
ENVIRONMENT = f"DB_URL=postgresql://ella@p22-ella-db:5432/ella PGPASSFILE={PROD_ROOT}/ops/pgpass"


def status(*extra: str) -> tuple[int, dict]:
    result = run_cli("--inventory", "sandbox", "--output", "json", "status", *extra)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {}


def ella_processes(sandbox, host: str) -> list[str]:
    return [line for line in sandbox.exec(host, "ps -eo args").stdout.splitlines() if ".sif run" in line]


def start_by_hand(sandbox, host: str, port: int = 3114) -> None:
    """An operator runs the image directly, behind the tool's back."""
    sandbox.exec(host, f"cd {PROD_ROOT}/ella-prod && {ENVIRONMENT} ELLA_API_LOG=/tmp/manual.log API_PORT={port} "
                       f"nohup singularity run {LINK} >/tmp/manual.out 2>&1 &", user="ella")
    deadline = time.monotonic() + 20
    while not ella_processes(sandbox, host):
        assert time.monotonic() < deadline, "the hand-started ELLA did not appear"
        time.sleep(0.2)


def control(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--inventory", "sandbox", "--output", "json", *args)


@pytest.fixture
def paused_primary(prod):
    subprocess.run(["podman", "pause", prod.hosts["p22-ella-01"].container], check=True, capture_output=True)
    yield prod
    subprocess.run(["podman", "unpause", prod.hosts["p22-ella-01"].container], capture_output=True)


def test_status_one_active_then_none(prod):
    code, report = status()
    assert (code, report["verdict"], report["active_hosts"]) == (0, "ONE ACTIVE", ["p22-ella-01"])
    stopped = control("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert ella_processes(prod, "p22-ella-01") == []
    code, report = status()
    assert (code, report["verdict"]) == (1, "NONE ACTIVE")


def test_status_sees_a_second_ella_started_by_hand(prod):
    start_by_hand(prod, "p22-ella-fo-01")
    code, report = status()
    assert code == 2 and report["verdict"] == "CONFLICT"
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-fo-01"]["stray_processes"] == 1 and hosts["p22-ella-fo-01"]["active"]
    # stop --all ends both, the stray one included.
    assert control("stop", "--all").returncode == 0
    assert ella_processes(prod, "p22-ella-01") == [] and ella_processes(prod, "p22-ella-fo-01") == []


def test_status_sees_a_stray_beside_the_supervised_one(prod):
    start_by_hand(prod, "p22-ella-01", port=3115)
    code, report = status()
    assert code == 2 and report["verdict"] == "CONFLICT"
    assert any("not under supervisor" in reason for reason in report["reasons"])


def test_status_of_a_host_that_is_down_is_unknown(paused_primary):
    code, report = status()
    assert code == 2 and report["verdict"] == "UNKNOWN"
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-01"]["reachable"] is False
    assert hosts["p22-ella-fo-01"]["reachable"] is True


def test_a_standby_session_in_the_database_is_a_conflict(prod):
    prod.exec("p22-ella-fo-01", f"{ENVIRONMENT} nohup psql -h p22-ella-db -U ella ella -c 'SELECT pg_sleep(30)' "
                                ">/dev/null 2>&1 &", user="ella")
    time.sleep(1)
    code, report = status()
    assert code == 2 and report["verdict"] == "CONFLICT"
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-fo-01"]["db_sessions"] >= 1
    prod.exec("p22-ella-fo-01", "pkill -f pg_sleep", check=False)


def test_start_on_the_failover_is_refused_while_prod_runs(prod):
    refused = control("start", "--host", "p22-ella-fo-01")
    assert refused.returncode == 75, refused.stderr
    assert "single-active guard" in refused.stderr or "single-active guard" in refused.stdout
    assert ella_processes(prod, "p22-ella-fo-01") == []

    assert control("stop", "--host", "p22-ella-01").returncode == 0
    started = control("start", "--host", "p22-ella-fo-01")
    assert started.returncode == 0, started.stderr
    code, report = status()
    assert (code, report["active_hosts"]) == (0, ["p22-ella-fo-01"])
    assert api(prod, "/api/v1/config/", host="p22-ella-fo-01")["app"]["version"] == "2.0.0"


def test_failover_with_prod_healthy_moves_ella_and_loses_no_row(prod):
    api(prod, "/api/v1/analyses/", {"name": "written-before-failover", "genepanel": "Cardio_v2"})
    before = prod.psql("SELECT count(*) FROM analysis;")
    result = control("failover")
    assert result.returncode == 0, result.stderr
    assert ella_processes(prod, "p22-ella-01") == []
    assert len(ella_processes(prod, "p22-ella-fo-01")) == 1
    names = [a["name"] for a in api(prod, "/api/v1/analyses/", host="p22-ella-fo-01")]
    assert "written-before-failover" in names
    assert prod.psql("SELECT count(*) FROM analysis;") == before
    record = prod.audit_records()[-1]
    assert (record["kind"], record["source"], record["host"], record["outcome"]) == (
        "failover", "p22-ella-01", "p22-ella-fo-01", "success")
    assert record["downtime_seconds"] > 0

    back = control("failback")
    assert back.returncode == 0, back.stderr
    code, report = status()
    assert (code, report["active_hosts"]) == (0, ["p22-ella-01"])


def test_failover_from_an_unreachable_prod_needs_the_fencing_claim(paused_primary):
    prod = paused_primary
    refused = control("failover")
    assert refused.returncode == 75
    assert ella_processes(prod, "p22-ella-fo-01") == []

    fenced = control("failover", "--peer-fenced", "p22-ella-01")
    assert fenced.returncode == 0, fenced.stderr
    assert len(ella_processes(prod, "p22-ella-fo-01")) == 1
    record = prod.exec("p22-ella-fo-01", f"tail -n 1 {PROD_ROOT}/deploy/audit.jsonl").stdout
    assert json.loads(record)["fenced_hosts"] == ["p22-ella-01"]

    # The claim was false here (the VM was only paused): when it comes back, status says so.
    subprocess.run(["podman", "unpause", prod.hosts["p22-ella-01"].container], check=True, capture_output=True)
    code, report = status()
    assert code == 2 and report["verdict"] == "CONFLICT"
    assert control("stop", "--host", "p22-ella-01").returncode == 0
    assert status()[0] == 0


def test_two_starts_at_once_leave_exactly_one_ella(prod):
    assert control("stop").returncode == 0
    commands = [
        [sys.executable, "-m", "ella_deploy", "--inventory", "sandbox", "start", "--host", host]
        for host in ("p22-ella-01", "p22-ella-fo-01")
    ]
    processes = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c in commands]
    outputs = [p.communicate(timeout=600) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 75], outputs
    running = [h for h in ("p22-ella-01", "p22-ella-fo-01") if ella_processes(prod, h)]
    assert len(running) == 1
    code, report = status()
    assert code == 0 and report["active_hosts"] == running
