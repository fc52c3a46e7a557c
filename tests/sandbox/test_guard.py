"""Never two active hosts, with real ELLA: status, start/stop and failover against real faults
- an ELLA started by hand (Singularity's runtime parent, ELLA's own supervisord inside), a dead
API behind a RUNNING program, a paused (unreachable) host, a standby's session in the database,
a fenced VM whose sessions linger, two commands at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli
from tests.sandbox.conftest import EllaUser, api, revision, table_checksums
from tests.sandbox_access import PROD_ROOT


LINK = f"{PROD_ROOT}/ella-prod/ella.sif"


def status(*extra: str) -> tuple[int, dict]:
    result = run_cli("--inventory", "sandbox", "--output", "json", "status", *extra)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {}


def ella_processes(sandbox, host: str) -> list[str]:
    """ELLA on a host as ps shows it: Singularity's runtime parents, ELLA's API workers."""
    lines = sandbox.exec(host, "ps -eo args").stdout.splitlines()
    return [line for line in lines if line.startswith("Singularity runtime parent") or "api.main:app" in line]


def start_by_hand(sandbox, host: str, port: int = 3114, socket: str = "/tmp/ella-supervisor/socket") -> None:
    """An operator runs the image directly, as ELLA's docs show, behind the tool's back."""
    binds = (f"--bind {PROD_ROOT}/ella-prod/data:/data --bind {PROD_ROOT}/ella-prod/logs:/logs "
             f"--bind {socket}:/socket --bind {PROD_ROOT}/ops/pgpass:/ops/pgpass:ro")
    env = ("SINGULARITYENV_ELLA_CONFIG=/data/ella_config.yml SINGULARITYENV_DB_URL=postgresql://ella@p22-ella-db/ella "
           f"SINGULARITYENV_PGPASSFILE=/ops/pgpass SINGULARITYENV_PORT={port} "
           "SINGULARITYENV_SUPERVISOR_CONFIG=/socket/supervisor.cfg SINGULARITYENV_NUM_WORKERS=1 "
           "SINGULARITYENV_ANALYSES_INCOMING=/data/analyses/incoming SINGULARITYENV_ANALYSES_PATH=/data/analyses/imported")
    sandbox.exec(host, f"mkdir -p -m 0700 {socket} && cd {PROD_ROOT}/ella-prod && {env} "
                       f"nohup singularity run {binds} {LINK} >/tmp/by-hand.out 2>&1 &", user="ella")
    deadline = time.monotonic() + 60
    while not any("api.main:app" in line for line in ella_processes(sandbox, host)):
        assert time.monotonic() < deadline, sandbox.exec(host, "cat /tmp/by-hand.out", check=False).stdout
        time.sleep(0.5)


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
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-01"]["running_versions"] == ["1.16.5"] and hosts["p22-ella-01"]["symlink_version"] == "1.16.5"
    # supervisord's own controls on the standby (its UI on :9000, supervisorctl) cannot start
    # a second ELLA: the program's command sees ELLA's sessions from the active host.
    prod.exec("p22-ella-fo-01", f"supervisorctl -c {PROD_ROOT}/ops/supervisor/supervisor.cfg start ella",
              user="ella", check=False)
    program_log = prod.exec("p22-ella-fo-01", f"tail -n 3 {PROD_ROOT}/ella-prod/logs/ella-p22-ella-fo-01.log",
                            user="ella").stdout
    assert "ELLA not started: ELLA's login has" in program_log and "another host runs ELLA" in program_log
    assert ella_processes(prod, "p22-ella-fo-01") == [] and status()[1]["active_hosts"] == ["p22-ella-01"]
    stopped = control("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert ella_processes(prod, "p22-ella-01") == []
    code, report = status()
    assert (code, report["verdict"]) == (1, "NONE ACTIVE")


def test_status_sees_an_ella_started_by_hand_and_stop_ends_it(prod):
    start_by_hand(prod, "p22-ella-fo-01")
    code, report = status()
    assert code == 2 and report["verdict"] == "CONFLICT", report
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-fo-01"]["stray_processes"] == 1 and hosts["p22-ella-fo-01"]["active"]
    # The image it runs is known: the service user sees what its runtime parent holds open.
    assert hosts["p22-ella-fo-01"]["running_versions"] == ["1.16.5"]
    assert control("stop", "--all").returncode == 0
    assert ella_processes(prod, "p22-ella-01") == [] and ella_processes(prod, "p22-ella-fo-01") == []


def test_a_dead_api_behind_a_running_program_is_seen(prod):
    # ELLA's own supervisord stops its API inside the image; the outer program stays RUNNING.
    socket = "/tmp/ella-supervisor/socket"
    password = prod.exec("p22-ella-01", f"sed -n 's/^password *= *//p' {socket}/supervisor.cfg | head -1",
                         user="ella").stdout.strip()
    prod.exec("p22-ella-01", f"supervisorctl -s unix://{socket}/supervisor.sock -u ella -p '{password}' stop api",
              user="ella")
    code, report = status()
    assert report["verdict"] == "ONE ACTIVE"  # ELLA runs there, and nowhere else
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-01"]["ella"] == "RUNNING" and "api STOPPED" in hosts["p22-ella-01"]["inner_problems"]
    text = run_cli("--inventory", "sandbox", "status").stdout
    assert "inside it: api STOPPED" in text
    # restart brings it back through the health gate.
    assert control("restart").returncode == 0
    assert status()[1]["hosts"][0]["inner_problems"] == []


def test_status_of_a_host_that_is_down_is_unknown(paused_primary):
    code, report = status()
    assert code == 2 and report["verdict"] == "UNKNOWN"
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-01"]["reachable"] is False and hosts["p22-ella-fo-01"]["reachable"] is True


def test_a_standby_session_in_the_database_is_a_conflict(prod):
    prod.exec("p22-ella-fo-01", f"PGPASSFILE={PROD_ROOT}/ops/pgpass nohup psql -h p22-ella-db -U ella ella "
                                "-c 'SELECT pg_sleep(30)' >/dev/null 2>&1 &", user="ella")
    time.sleep(1)
    code, report = status()
    assert code == 2 and report["verdict"] == "CONFLICT"
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-fo-01"]["db_sessions"] >= 1
    prod.exec("p22-ella-fo-01", "pkill -f pg_sleep", check=False)


def test_start_on_the_failover_is_refused_while_prod_runs(prod):
    refused = control("start", "--host", "p22-ella-fo-01")
    assert refused.returncode == 75, refused.stderr
    assert "single-active guard" in refused.stderr
    assert ella_processes(prod, "p22-ella-fo-01") == []
    assert control("stop", "--host", "p22-ella-01").returncode == 0
    started = control("start", "--host", "p22-ella-fo-01")
    assert started.returncode == 0, started.stderr
    code, report = status()
    assert (code, report["active_hosts"]) == (0, ["p22-ella-fo-01"])
    assert "app" in api(prod, "/api/v1/config/", host="p22-ella-fo-01")


def test_a_start_refuses_an_image_the_database_does_not_match(prod):
    # The symlink switched, the database not migrated (what an interrupted release by hand leaves).
    assert control("stop").returncode == 0
    prod.exec("p22-ella-01", f"ln -sfn ../archive/releases/ella-release-v1.17.2.sif {LINK}", user="ella")
    refused = control("start")
    assert refused.returncode == 75, refused.stderr
    assert "the database is at revision 1675e8d8b078" in refused.stderr and "expects 4c2844fef850" in refused.stderr
    assert ella_processes(prod, "p22-ella-01") == []


def test_failover_moves_ella_with_the_same_image_and_loses_no_row(prod):
    user = EllaUser(prod)
    user.report_errors(3, "before the failover")
    before = table_checksums(prod)["uiexception"]
    result = control("failover")
    assert result.returncode == 0, result.stderr
    assert ella_processes(prod, "p22-ella-01") == []
    record = json.loads(result.stdout)["record"]
    assert record["source"] == "p22-ella-01" and record["host"] == "p22-ella-fo-01"
    assert record["downtime_seconds"] > 0
    assert table_checksums(prod)["uiexception"] == before
    assert EllaUser(prod, host="p22-ella-fo-01").report_errors(1, "after the failover") == ["after the failover 0"]
    back = control("failback")
    assert back.returncode == 0, back.stderr
    assert status()[1]["active_hosts"] == ["p22-ella-01"]


def test_failover_from_an_unreachable_prod_needs_the_fencing_claim_and_ends_its_sessions(paused_primary):
    prod = paused_primary
    # The paused VM's ELLA still holds sessions in the database, as a dead VM's would for hours.
    assert int(prod.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'ella' "
                         "AND host(client_addr) = '10.213.22.11';")) > 0
    refused = control("failover")
    assert refused.returncode == 75, refused.stderr
    assert "unknown" in refused.stderr.lower()
    fenced = control("failover", "--peer-fenced", "p22-ella-01")
    assert fenced.returncode == 0, fenced.stderr
    assert int(prod.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'ella' "
                         "AND host(client_addr) = '10.213.22.11';")) == 0
    record = json.loads(fenced.stdout)["record"]
    assert record["fenced_hosts"] == ["p22-ella-01"] and record["host"] == "p22-ella-fo-01"
    assert revision(prod) == "1675e8d8b078"
    # Unpaused, the old VM's ELLA is a second instance: status says so at once.
    subprocess.run(["podman", "unpause", prod.hosts["p22-ella-01"].container], check=True, capture_output=True)
    assert status()[1]["verdict"] == "CONFLICT"
    assert control("stop", "--host", "p22-ella-01").returncode == 0


def test_a_fencing_claim_for_a_vm_that_only_lost_ssh_is_checked_and_refused(prod):
    # p22-ella-01 stops answering SSH (its sshd frozen: the TCP connect works, no greeting), but
    # the VM runs, and so does its ELLA. Someone declares it fenced anyway.
    freeze = "kill -{} $(pgrep -o -f '^sshd: /usr/sbin/sshd')"
    prod.exec("p22-ella-01", freeze.format("STOP"))
    try:
        refused = control("failover", "--peer-fenced", "p22-ella-01")
    finally:
        prod.exec("p22-ella-01", freeze.format("CONT"))
    # Its sessions were ended, ELLA reconnected within the watch: not fenced, nothing started.
    assert refused.returncode == 75, refused.stderr
    assert "p22-ella-01 declared fenced, but" in refused.stderr and "that VM is running" in refused.stderr
    assert ella_processes(prod, "p22-ella-fo-01") == []
    code, report = status()
    assert code == 0 and report["active_hosts"] == ["p22-ella-01"]
    record = prod.audit_records()[-1]
    assert record["kind"] == "failover" and record["outcome"] == "failed" and "declared fenced" in json.dumps(record)


def test_a_failover_checks_the_standby_before_the_primary_stops_and_undoes_a_start_that_fails(prod):
    runtime_before = ella_processes(prod, "p22-ella-01")
    # Another program holds ELLA's port on the standby: refused before the primary stops.
    prod.exec("p22-ella-fo-01", "nohup python3 -m http.server 3114 >/dev/null 2>&1 & echo $! > /tmp/squatter.pid",
              user="ella")
    try:
        time.sleep(1)
        refused = control("failover")
    finally:
        prod.exec("p22-ella-fo-01", "kill $(cat /tmp/squatter.pid)", user="ella")
    assert refused.returncode == 75 and "port 3114 on p22-ella-fo-01 is in use" in refused.stderr, refused.stderr
    assert ella_processes(prod, "p22-ella-01") == runtime_before  # never stopped
    # A start on the standby that fails after every check (ELLA's own supervisord cannot write
    # its socket there): what was half-started there is stopped, the primary serves again.
    socket = "/tmp/ella-supervisor/socket"
    prod.exec("p22-ella-fo-01", f"mkdir -p {socket} && chmod 000 {socket}", user="ella")
    try:
        failed = control("failover")
    finally:
        prod.exec("p22-ella-fo-01", f"chmod 700 {socket}", user="ella")
    assert failed.returncode == 2, failed.stderr
    assert "failover to p22-ella-fo-01 failed" in failed.stderr and "p22-ella-01 serves again" in failed.stderr
    code, report = status()
    assert code == 0 and report["active_hosts"] == ["p22-ella-01"], report
    assert ella_processes(prod, "p22-ella-fo-01") == []
    record = prod.audit_records()[-1]
    assert (record["kind"], record["outcome"], record["serving"]) == ("failover", "failed", "p22-ella-01")
    assert EllaUser(prod).report_errors(1, "after the failed failover") == ["after the failed failover 0"]


def test_two_starts_at_once_leave_exactly_one_ella(prod):
    assert control("stop").returncode == 0
    starts = [subprocess.Popen([sys.executable, "-m", "ella_deploy", "--inventory", "sandbox", "start", "--host", host],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for host in ("p22-ella-01", "p22-ella-fo-01")]
    codes = sorted(p.wait(timeout=600) for p in starts)
    assert codes[0] == 0 and codes[1] == 75, [p.stderr.read() for p in starts]
    code, report = status()
    assert code == 0 and len(report["active_hosts"]) == 1


def test_unknown_hosts_are_refused_before_any_host_is_touched(prod):
    for args in (("stop", "--host", "p22-ella-99"), ("start", "--host", "nonsense")):
        done = control(*args)
        assert done.returncode == 64, (args, done.returncode, done.stderr)
        assert "not an ELLA host" in done.stderr
    assert status()[1]["active_hosts"] == ["p22-ella-01"]
