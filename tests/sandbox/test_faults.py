"""The fault suite of issue #11 ("Lose nothing, whatever fails"), against real ELLA.

Each fault ends with either the previous version running on its previous data (the checksums
of every table equal), or production clearly stopped with its data consistent and said so
(status, the audit record, the journal), and the lock explained. The README's fault table
names each test."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli
from tests.sandbox.conftest import (
    HEAD_1_16_5, EllaUser, api, release, revision, running_image, stage_fault, table_checksums,
)
from tests.sandbox.test_guard import ella_processes, start_by_hand
from tests.sandbox_access import PROD_ROOT


PLAYBOOK = ROOT / "tests" / "sandbox" / "playbooks"


def status() -> dict:
    return json.loads(run_cli("--inventory", "sandbox", "--output", "json", "status").stdout)


def ansible_playbook(playbook: str, **extravars: object) -> subprocess.CompletedProcess[str]:
    """A test playbook against the sandbox, as an operator would run ansible-playbook."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_HOST_KEY_CHECKING": "True"}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"),
                           str(PLAYBOOK / playbook), "-e", json.dumps(extravars)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def journal_step(sandbox, step: str, state: str = "started") -> bool:
    return any(s["step"] == step and s["state"] == state for s in sandbox.journal().get("steps", []))


# ---- 1. A restore never commits an empty or half-loaded database -------------------------------

@pytest.mark.parametrize("damage", ["missing", "truncated", "manifest disagrees"])
def test_a_restore_from_a_bad_dump_leaves_the_live_database_untouched(prod, damage):
    before = table_checksums(prod)
    result = ansible_playbook("restore.yml", damage=damage)
    assert result.returncode != 0, result.stdout
    # (pg_restore words a cut file by where it is cut: "could not read [from] input file".)
    expected = {"missing": r"does not exist", "truncated": r"pg_restore failed .*could not read (from )?input file",
                "manifest disagrees": r"restored rows differ from the backup's manifest"}[damage]
    assert re.search(expected, result.stdout), result.stdout[-3000:]
    assert table_checksums(prod) == before and revision(prod) == HEAD_1_16_5
    assert not [d for d in prod.databases() if "_restore_" in d or "_replaced_" in d]


def test_a_good_dump_restores_completely_and_only_then_replaces_the_live_database(prod):
    before = table_checksums(prod)
    result = ansible_playbook("restore.yml", damage="none")
    assert result.returncode == 0, result.stdout[-3000:]
    assert table_checksums(prod) == before
    # The replaced database is kept for inspection, under its own name.
    assert [d for d in prod.databases() if d.startswith("ella_replaced_")]


def test_a_lost_rollback_point_stops_production_instead_of_guessing(prod):
    """The rollback point vanishes (a DBA drops it) while the health gate waits: the rollback
    must not touch the data; ELLA stays stopped and everything says why."""
    version = stage_fault(prod, "never-healthy")
    run = subprocess.Popen([sys.executable, "-m", "ella_deploy", "--inventory", "sandbox", "--output", "json",
                            "release", version, "--yes", "--skip-staging-check"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: journal_step(prod, "start"), what="the start of the faulty release")
    point = prod.journal()["rollback_point"]["database"]
    prod.psql(f'DROP DATABASE "{point}" WITH (FORCE);', "postgres")
    out, err = run.communicate(timeout=600)
    assert run.returncode == 2, err
    record = json.loads(out)["record"]
    assert record["outcome"] == "rollback_failed"
    assert "rollback point" in record["rollback"]["summary"] and "missing" in record["rollback"]["summary"]
    # The data stays as the migrations left it: consistent with the image it was migrated for.
    assert revision(prod) == "4c2844fef850"
    report = status()
    assert report["verdict"] == "NONE ACTIVE" and not (report["lock"] or {}).get("held")
    assert report["journal"]["open"] and report["journal"]["phase"] == "rollback_failed"
    assert "stopped in phase rollback_failed" in run_cli("--inventory", "sandbox", "status").stdout


def test_sessions_of_other_logins_refuse_the_release_and_elles_own_leftovers_are_ended(prod):
    """The rollback point (a copy the server makes) needs no session on the database: another
    login's session refuses the release before ELLA stops; one of ELLA's own login that
    outlives ELLA's stop is ended by the window."""
    serving = prod.exec("p22-ella-01", "pgrep -f '^Singularity runtime parent'", user="ella").stdout.strip()
    other = subprocess.Popen(["podman", "exec", "--user", "postgres", "ella-sandbox-p22-ella-db", "psql", "-d", "ella",
                              "-c", "SELECT pg_sleep(600)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: prod.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%' "
                                   "AND pid <> pg_backend_pid();") == "1", what="the other login's session")
        code, _, stderr = release("1.17.0", "--skip-staging-check")
        assert code == 75 and "session(s) of other logins" in stderr and "postgres@" in stderr, stderr
        assert prod.exec("p22-ella-01", "pgrep -f '^Singularity runtime parent'", user="ella").stdout.strip() == serving
        assert revision(prod) == HEAD_1_16_5
    finally:
        other.kill()
        prod.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%' "
                  "AND pid <> pg_backend_pid();")
    # ELLA's own login, from the host, as a process ELLA's stop does not reach.
    own = subprocess.Popen(["podman", "exec", "--user", "ella", "ella-sandbox-p22-ella-01", "sh", "-c",
                            f"PGPASSFILE={PROD_ROOT}/ops/pgpass exec psql -h p22-ella-db -U ella -d ella "
                            "-c 'SELECT pg_sleep(600)'"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: prod.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'ella' "
                                   "AND query LIKE 'SELECT pg_sleep(600)%';") == "1", what="ELLA's login's session")
        code, summary, stderr = release("1.17.0", "--skip-staging-check")
        assert code == 0, stderr
        step = next(s for s in prod.journal()["steps"] if s["step"] == "rollback_point")
        assert step["ended_sessions"] == 1
        assert own.wait(timeout=30) != 0  # its backend was terminated
    finally:
        own.kill()


# ---- 2. Once the new version served, nothing restores data -------------------------------------

def test_a_failure_after_go_live_is_reported_never_undone(prod):
    # The backup taken after go-live cannot be written: where its directory belongs is a file
    # (a mode the service user could change back, ella-deploy would change back).
    prod.exec("p22-ella-01", f"rm -rf {PROD_ROOT}/backups && echo not a directory > {PROD_ROOT}/backups", user="ella")
    try:
        code, summary, stderr = release("1.17.0", "--skip-staging-check")
    finally:
        prod.exec("p22-ella-01", f"rm -f {PROD_ROOT}/backups", user="ella")
    record = summary["record"]
    assert record["outcome"] == "success", (code, stderr)
    assert record["after_live_errors"] and "backup directory" in record["after_live_errors"][0]["task"], record
    # No dump was written: the rollback point (the pre-release data) stays until `accept`.
    assert [d for d in prod.databases() if d.startswith("ella_rollback_")], prod.databases()
    assert revision(prod) == "92066141f180" and status()["active_hosts"] == ["p22-ella-01"]
    assert prod.psql("SELECT count(*) FROM uiexception WHERE message LIKE 'before the release %';") == "5"
    assert EllaUser(prod).report_errors(1, "after go-live") == ["after go-live 0"]

    # accept never drops the last copy: the rollback point stays until a backup of it reads back.
    points = [d for d in prod.databases() if d.startswith("ella_rollback_")]
    refused = run_cli("--inventory", "sandbox", "accept")
    assert refused.returncode == 75, refused.stderr
    assert "no backup was taken" in refused.stderr and "ella-deploy backup --rollback-point" in refused.stderr \
        and points[0] in refused.stderr, refused.stderr
    assert [d for d in prod.databases() if d.startswith("ella_rollback_")] == points
    # A backup that is there but does not read back completely counts as none either.
    taken = json.loads(run_cli("--inventory", "sandbox", "--output", "json", "backup", "--rollback-point",
                               check=True).stdout)
    assert taken["rollback_point"] == points[0] and taken["backup"]["verified"] == "read back completely"
    dump = taken["backup"]["path"]
    prod.exec("p22-ella-01", f"cp {dump} /tmp/intact.dump && truncate -s $(( $(stat -c %s {dump}) / 2 )) {dump}",
              user="ella")
    refused = run_cli("--inventory", "sandbox", "accept")
    assert refused.returncode == 75 and os.path.basename(dump) in refused.stderr, refused.stderr
    prod.exec("p22-ella-01", f"cp /tmp/intact.dump {dump}", user="ella")
    # A crash tore the audit log's last write: accept reads past it, and closes it.
    log = f"{PROD_ROOT}/deploy/audit.jsonl"
    prod.exec("p22-ella-01", f"printf '%s' '{{\"kind\": \"release\", \"outc' >> {log}", user="ella")
    accepted = run_cli("--inventory", "sandbox", "--output", "json", "accept")
    assert accepted.returncode == 0, accepted.stderr
    record = prod.audit_records()[-1]
    assert record["kind"] == "accept" and record["rollback_points_dropped"] == points
    assert record["backup_checked"]["path"] == dump
    assert not [d for d in prod.databases() if d.startswith("ella_rollback_")]

    # The audit log's chain: intact with the torn line skipped; an edited line shows.
    verified = run_cli("--inventory", "sandbox", "history", "--verify")
    assert verified.returncode == 0 and "intact" in verified.stdout and "torn line(s) skipped" in verified.stdout
    prod.exec("p22-ella-01", f"sed -i '0,/\"outcome\": \"success\"/s//\"outcome\": \"failed\"/' {log}",
              user="ella")
    verified = run_cli("--inventory", "sandbox", "history", "--verify")
    assert verified.returncode == 2 and "NOT intact: line 2" in verified.stdout, verified.stdout


# ---- 2b. A release it could not roll back is refused before anything stops --------------------

def test_a_release_it_could_not_roll_back_is_refused_before_anything_stops(fresh):
    """The rollback target's image missing or damaged; ELLA's login unable to make the rollback point."""
    archive = f"{PROD_ROOT}/archive/releases"
    previous = f"{archive}/ella-release-v1.16.5.sif"
    up_before = status()["hosts"][0]["uptime_seconds"]
    fresh.exec("p22-ella-01", f"mv {previous} {previous}.away", user="ella")
    try:
        # The plan says it (the release's own pre-flight refuses on the same plan fact).
        plan = run_cli("--inventory", "sandbox", "release", "1.17.0", "--check", "--skip-staging-check")
        assert "rollback target" in plan.stdout and "ella-release-v1.16.5.sif: missing" in plan.stdout, plan.stdout
        assert "--without-rollback-image" in plan.stdout
    finally:
        fresh.exec("p22-ella-01", f"mv {previous}.away {previous}", user="ella")
    # Present but not what was staged: its .sha256 (as `stage` writes one) disagrees.
    fresh.exec("p22-ella-01", f"echo {'0' * 64} > {previous}.sha256", user="ella")
    try:
        code, _, stderr = release("1.17.0", "--skip-staging-check")
        assert code == 75 and "sha256 mismatch" in stderr and "ella-release-v1.16.5.sif" in stderr, stderr
    finally:
        fresh.exec("p22-ella-01", f"rm -f {previous}.sha256", user="ella")
    # ELLA's login may no longer CREATE DATABASE (a DBA's change): the rollback point could not
    # be made, said before ELLA stops.
    fresh.psql("ALTER ROLE ella NOCREATEDB;", database="postgres")
    try:
        code, _, stderr = release("1.17.0", "--skip-staging-check")
        assert code == 75 and "ELLA's login ella may not CREATE DATABASE" in stderr, stderr
    finally:
        fresh.psql("ALTER ROLE ella CREATEDB;", database="postgres")
    # Nothing stopped, nothing opened, nothing copied.
    report = status()
    assert report["active_hosts"] == ["p22-ella-01"] and not report["lock"]["held"]
    assert not (report["journal"] or {}).get("open") and report["hosts"][0]["uptime_seconds"] > up_before
    assert not [d for d in fresh.databases() if d.startswith("ella_rollback_")]


# ---- 3. An interrupted run: Ctrl-C, a lost connection, a dead controller -----------------------

def release_in_background(version: str) -> subprocess.Popen:
    """A release as an operator starts it, its JSON summary on stdout at the end."""
    return subprocess.Popen([sys.executable, "-m", "ella_deploy", "--inventory", "sandbox", "--output", "json",
                             "release", version, "--yes", "--skip-staging-check"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt(run: subprocess.Popen) -> dict:
    """Ctrl-C: the release exits 130 once it recovered; what the recovery found and did."""
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 130, err
    assert json.loads(out)["outcome"] == "interrupted"
    return json.loads(out)["recovery"]


def test_ctrl_c_during_the_migration_rolls_back_at_once(prod):
    before = table_checksums(prod)
    run = release_in_background("1.17.0")
    wait_for(lambda: journal_step(prod, "migrate"), what="the migration")
    found = interrupt(run)
    assert found["decision"]["action"] == "rollback"
    # Nothing after the interrupt began the new version's start.
    assert "start" not in [s["step"] for s in found["journal"]["steps"]], found["journal"]
    assert found["record"]["outcome"] == "rolled_back"
    assert revision(prod) == HEAD_1_16_5 and table_checksums(prod) == before
    report = status()
    assert report["active_hosts"] == ["p22-ella-01"] and not report["lock"]["held"]
    assert report["journal"]["open"] is False


def test_ctrl_c_while_the_new_version_starts_stops_it_before_it_serves(prod):
    # The start on the host outlives the stopped ansible-playbook; recover asks it to stop at
    # its next boundary instead of waiting for its health gate (it never passes here).
    before = table_checksums(prod)
    run = release_in_background(stage_fault(prod, "never-healthy"))
    wait_for(lambda: journal_step(prod, "start"), timeout=300, what="the start")
    found = interrupt(run)
    start = next(s for s in found["journal"]["steps"] if s["step"] == "start")
    assert start["state"] == "failed" and "cancelled by the operator before ELLA served" in start["error"], start
    assert found["decision"]["action"] == "rollback" and found["record"]["outcome"] == "rolled_back"
    assert revision(prod) == HEAD_1_16_5 and table_checksums(prod) == before
    assert status()["active_hosts"] == ["p22-ella-01"]


def test_a_lost_ssh_connection_during_the_window_ends_rolled_back(prod):
    before = table_checksums(prod)
    run = release_in_background(stage_fault(prod, "never-healthy"))
    wait_for(lambda: journal_step(prod, "migrate"), what="the migration")
    # Every SSH session to the host ends (as when the network drops): the module on the host goes on.
    prod.exec("p22-ella-01", "pkill -f '[s]shd: deploy' || true")
    out, err = run.communicate(timeout=900)
    record = json.loads(out).get("record") or {}
    if record.get("outcome") != "rolled_back":
        # The rescue may itself have lost the race with the dropped connection: recover finishes it.
        recovered = run_cli("--inventory", "sandbox", "--output", "json", "recover")
        assert recovered.returncode == 0, recovered.stderr
    assert revision(prod) == HEAD_1_16_5 and table_checksums(prod) == before
    assert status()["active_hosts"] == ["p22-ella-01"]


def kill_release_at(sandbox, version: str, step: str) -> None:
    """A release whose controller dies (the CLI and its ansible-playbook at once, as a closed
    laptop) once its journal shows `step` started; the step on the host goes on."""
    run = subprocess.Popen([sys.executable, "-m", "ella_deploy", "--inventory", "sandbox", "release", version,
                            "--yes", "--skip-staging-check"], cwd=ROOT, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: journal_step(sandbox, step), timeout=300, what=f"the step {step}")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def test_a_dead_controller_leaves_a_lock_and_a_journal_that_recover_resolves(prod):
    # Killed while the new version's start waits for a health gate it never passes: a process
    # holds the new image, but it never answered, so it served no one and recover rolls back
    # (after the start on the host gives up), restoring the data its migrations changed.
    before = table_checksums(prod)
    kill_release_at(prod, stage_fault(prod, "never-healthy"), "start")
    # The start on the host goes on, and renews the lock while its health gate waits (recover
    # waits for it anyway): a live step's lock never looks stale.
    time.sleep(2 * 10 - 4)
    assert journal_step(prod, "start", "started")
    report = status()
    assert report["lock"]["held"] and report["journal"]["open"]
    assert report["lock"]["heartbeat_age"] < 11, report["lock"]
    # A new release is refused: the journal is open (not "already live" from the symlink alone).
    code, _, stderr = release("1.17.0", "--skip-staging-check")
    assert code == 75 and ("recover" in stderr or "deploy lock held" in stderr), stderr
    # recover waits for the host to finish its step, breaks the lock of the dead process, rolls back.
    found = run_cli("--inventory", "sandbox", "--output", "json", "recover")
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr
    result = json.loads(found.stdout)
    assert result["decision"]["action"] == "rollback" and "never served" in result["decision"]["why"]
    assert result["record"]["lock_broken"]["gone"]
    assert revision(prod) == HEAD_1_16_5 and table_checksums(prod) == before
    assert status()["active_hosts"] == ["p22-ella-01"]


# ---- 3b. Between commands: an open release is recover's alone ---------------------------------

SUPERVISORCTL = f"supervisorctl -c {PROD_ROOT}/ops/supervisor/supervisor.cfg"


def answers(sandbox) -> bool:
    try:
        return "app" in api(sandbox, "/api/v1/config/")
    except OSError:
        return False


def window_ended(sandbox) -> bool:
    """The window on the host ran to its end after its controller died: the new version in place, not started."""
    return sandbox.journal().get("phase") == "window_done"


def test_every_command_waits_for_recover_and_recover_keeps_what_users_wrote_after_a_start_by_hand(prod):
    # 3 a.m.: a release dies in its window; a colleague removes its dead lock and tries to get
    # ELLA back: the commands, then supervisord's own controls (the procedure's :9000), then
    # the image run by hand, past every control; users work on the new version; it is stopped
    # again; then someone runs what `status` suggests: recover.
    kill_release_at(prod, "1.17.0", "migrate")
    wait_for(lambda: window_ended(prod), timeout=120, what="the window's end on the host")
    prod.exec("p22-ella-01", f"rm -rf {PROD_ROOT}/deploy/lock", user="ella")
    # (stop, failover, db-task --commit go through the same wrapper: tests/unit/test_role_specs.py.)
    for command in (["start", "--break-lock", "users are waiting"], ["broadcast", "new", "ELLA er tilbake"]):
        refused = run_cli("--inventory", "sandbox", *command, "--yes")
        assert refused.returncode == 75, (command, refused.stderr)
        # (Above it, off a terminal, the progress lines of the tasks that ran.)
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith("ella-deploy: ") and "release of 1.17.0" in line and "phase window_done" in line \
            and "ella-deploy recover" in line, (command, refused.stderr)
    refusal = prod.audit_records()[-1]
    assert refusal["kind"] == "cli" and refusal["outcome"] == "failed" and "is open" in refusal["failure"]["message"]
    # supervisord's own controls run ELLA's program command, which applies the rule on the host.
    prod.exec("p22-ella-01", f"{SUPERVISORCTL} start ella", user="ella", check=False)
    program_log = prod.exec("p22-ella-01", f"tail -n 3 {PROD_ROOT}/ella-prod/logs/ella-p22-ella-01.log",
                            user="ella").stdout
    assert "ELLA not started: the release journal is open (phase window_done)" in program_log, program_log
    assert status()["active_hosts"] == []

    start_by_hand(prod, "p22-ella-01")
    wait_for(lambda: answers(prod), timeout=120, interval=1, what="ELLA started by hand")
    written = EllaUser(prod).report_errors(2, "on 1.17.0, started by hand")
    prod.exec("p22-ella-01", "pkill -TERM -f '^Singularity runtime parent' || true", user="ella")
    wait_for(lambda: not ella_processes(prod, "p22-ella-01"), timeout=60, interval=0.5, what="the stop by hand")

    found = run_cli("--inventory", "sandbox", "--output", "json", "recover", "--yes")
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr
    result = json.loads(found.stdout)
    assert result["decision"]["action"] == "finish", result["decision"]
    assert "served users after the window" in result["decision"]["why"]
    # ELLA's own log: the login and the two reports, from one user session.
    served = result["served"]
    assert served["served"] and served["writes"] == 3 and served["users"] == 1, served
    assert result["record"]["served_after_window"]["writes"] == 3
    # What users wrote is there, on 1.17.0's schema, and recover started it again.
    assert revision(prod) == "92066141f180"
    assert prod.psql("SELECT count(*) FROM uiexception WHERE message LIKE 'on 1.17.0, started by hand %';") \
        == str(len(written))
    assert prod.psql("SELECT count(*) FROM uiexception WHERE message LIKE 'before the release %';") == "5"
    report = status()
    assert report["active_hosts"] == ["p22-ella-01"] and report["journal"]["open"] is False
    assert "1.17.0" in running_image(prod)
    assert result["record"]["started_by_recover"] is True
    # The rollback point stays until accept, as after any release.
    assert [d for d in prod.databases() if d.startswith("ella_rollback_")]


def test_recover_keep_new_brings_the_new_version_back_at_once_audited(prod):
    # The operator must bring ELLA back before deciding: the window ended, nothing started.
    kill_release_at(prod, "1.17.0", "migrate")
    wait_for(lambda: window_ended(prod), timeout=120, what="the window's end on the host")
    found = run_cli("--inventory", "sandbox", "--output", "json", "recover", "--yes",
                    "--keep-new", "users need ELLA before the review")
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr
    result = json.loads(found.stdout)
    assert result["decision"]["action"] == "finish" and "kept by the operator" in result["decision"]["why"]
    record = result["record"]
    assert record["kept_by_operator"] == "users need ELLA before the review" and record["outcome"] == "success"
    assert record["lock_broken"]["gone"]
    assert prod.audit_records()[-1]["kept_by_operator"] == "users need ELLA before the review"
    assert revision(prod) == "92066141f180" and "1.17.0" in running_image(prod)
    report = status()
    assert report["active_hosts"] == ["p22-ella-01"] and report["journal"]["open"] is False
    # The release's backup, dumped from the rollback point, reads back; users write again.
    assert record["backup"]["verified"] == "read back completely"
    assert EllaUser(prod).report_errors(1, "after keep-new") == ["after keep-new 0"]


def test_a_rollback_that_died_after_its_swap_is_finished_by_recover_not_called_missing(prod):
    # A killed release, whose rollback then died right after it put the rollback point in the
    # live database's place (a host crash, a database restart before the journal's next
    # write). What that leaves is crafted here exactly: the journal's record of the swap it
    # began (written before it acts), and the swap done (both renames, one transaction).
    before = table_checksums(prod)
    kill_release_at(prod, "1.17.0", "migrate")
    wait_for(lambda: window_ended(prod), timeout=120, what="the window's end on the host")
    journal = prod.journal()
    point = journal["rollback_point"]["database"]
    failed_as = "ella_failed_20261208t010203z"
    journal["rollback_steps"] = {"swap": {"point": point, "failed_as": failed_as, "state": "started"}}
    prod.storage("deploy/journal.json").write_text(json.dumps(journal))
    prod.psql(f'BEGIN; ALTER DATABASE ella RENAME TO "{failed_as}"; ALTER DATABASE "{point}" RENAME TO ella; COMMIT;',
              database="postgres")
    assert revision(prod) == HEAD_1_16_5 and failed_as in prod.databases() and point not in prod.databases()

    found = run_cli("--inventory", "sandbox", "--output", "json", "recover", "--yes")
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr
    result = json.loads(found.stdout)
    assert result["decision"]["action"] == "rollback" and result["record"]["outcome"] == "rolled_back"
    assert "missing" not in json.dumps(result["record"])
    assert revision(prod) == HEAD_1_16_5 and table_checksums(prod) == before
    assert failed_as not in prod.databases() and point not in prod.databases()
    report = status()
    assert report["active_hosts"] == ["p22-ella-01"] and running_image(prod) == "ella-release-v1.16.5.sif"
    assert prod.journal()["phase"] == "done" and prod.journal()["rollback_steps"]["swap"]["state"] == "done"


# ---- 4. A host whose key changed gets nothing --------------------------------------------------

def test_a_host_with_a_changed_key_is_refused_and_gets_nothing(prod, tmp_path):
    known = prod.state_dir / "ssh" / "known_hosts"
    original = known.read_text()
    lines = [line if not line.startswith("p22-ella-fo-01,") else
             line.split()[0] + " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEkZ1ySHcf4v1Kx5Ahtq0rZb9cZ3L3KmzT1KgsTJ9jcj"
             for line in original.splitlines()]
    known.write_text("\n".join(lines) + "\n")
    pgpass = f"{PROD_ROOT}/ops/pgpass"
    stamp = prod.exec("p22-ella-fo-01", f"stat -c %Y {pgpass}").stdout
    try:
        report = status()
        assert report["verdict"] == "UNKNOWN"
        hosts = {h["host"]: h for h in report["hosts"]}
        assert hosts["p22-ella-fo-01"]["reachable"] is False
        refused = run_cli("--inventory", "sandbox", "failover")
        assert refused.returncode != 0 and "REMOTE HOST IDENTIFICATION HAS CHANGED" not in refused.stdout
    finally:
        known.write_text(original)
    assert prod.exec("p22-ella-fo-01", f"stat -c %Y {pgpass}").stdout == stamp


# ---- 5. A changed supervisor.cfg is applied before a start, not after ---------------------------

def test_a_changed_program_section_is_applied_before_the_failover_starts(prod):
    config = prod.storage("ops/supervisor/supervisor.cfg")
    prod.exec("p22-ella-01", f"sed -i 's/^stopwaitsecs=.*/stopwaitsecs=31/' {PROD_ROOT}/ops/supervisor/supervisor.cfg",
              user="ella")
    assert "stopwaitsecs=31" in config.read_text()
    result = run_cli("--inventory", "sandbox", "failover")
    assert result.returncode == 0, result.stderr
    time.sleep(5)
    report = status()
    assert report["active_hosts"] == ["p22-ella-fo-01"]
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["p22-ella-fo-01"]["ella"] == "RUNNING"


# ---- 6. A rollback restores what the fixtures step wrote, and its record ------------------------

def test_a_release_that_never_serves_rolls_back_its_migrations_and_user_groups_by_the_rollback_point(
        prod, fixtures_dir):
    """1.17.2 with an API that never answers, and a changed user group: ELLA's three migrations
    ran and the fixtures step applied the group, then the health gate waits in vain. The old
    image does not know the new revision; the rollback does not ask it, it swaps the rollback
    point back (the data, the groups) and the fixtures record."""
    groups = json.loads((fixtures_dir / "usergroups.json").read_text())
    groups[0]["config"]["overview"]["views"] = ["analyses"]
    (fixtures_dir / "usergroups.json").write_text(json.dumps(groups, indent=2))
    record_file = prod.storage("deploy/fixtures.json")
    record_before = record_file.read_text()
    before = table_checksums(prod)
    version = stage_fault(prod, "never-healthy")
    code, summary, stderr = release(version, "--skip-staging-check")
    assert code == 2, stderr
    record = summary["record"]
    assert record["outcome"] == "rolled_back" and record["fixtures_applied"] == ["usergroups"]
    assert record["migrations"]["applied"], "the faulty release's migrations should have run"
    assert "health gate" in record["failure"]["message"]
    assert revision(prod) == HEAD_1_16_5
    assert table_checksums(prod)["usergroup"] == before["usergroup"]
    assert table_checksums(prod) == before
    assert record_file.read_text() == record_before
    assert running_image(prod) == "ella-release-v1.16.5.sif"
    assert prod.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip() \
        == "../archive/releases/ella-release-v1.16.5.sif"
    assert prod.journal()["phase"] == "done" and prod.journal()["outcome"] == "rolled_back"


# ---- 7. The lock knows its holder ---------------------------------------------------------------

def test_a_live_lock_is_never_broken_nor_its_token_written_and_a_dead_one_is_broken_audited(prod):
    from ella_deploy import paths

    lock = prod.storage("deploy/lock")
    run = subprocess.Popen([sys.executable, "-m", "ella_deploy", "--inventory", "sandbox", "release", "1.17.0",
                            "--yes", "--skip-staging-check"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (lock / "holder.json").exists(), what="the lock")
    token = json.loads((lock / "holder.json").read_text())["token"]
    refused = run_cli("--inventory", "sandbox", "stop", "--break-lock", "I am sure")
    assert refused.returncode == 75 and "still there" in refused.stderr, refused.stderr
    assert token not in refused.stdout + refused.stderr
    assert run.wait(timeout=900) == 0
    # The lock's token (whoever holds it may release it) is in no ansible-runner artifact: not
    # the release's, not the refused break's.
    found = [p for p in (paths.state_dir() / "runs").rglob("*") if p.is_file() and token in p.read_text(errors="replace")]
    assert found == []
    # A lock left by a run that died long ago (heartbeat older than its lease) is broken, audited.
    prod.exec("p22-ella-01", f"mkdir {PROD_ROOT}/deploy/lock && echo '{{\"operator\": \"ghost\", \"token\": \"t\", "
                             f"\"lease_seconds\": 90}}' > {PROD_ROOT}/deploy/lock/holder.json && "
                             f"touch -d '-10 minutes' {PROD_ROOT}/deploy/lock/heartbeat", user="ella")
    assert run_cli("--inventory", "sandbox", "stop").returncode == 75
    broken = run_cli("--inventory", "sandbox", "--output", "json", "stop", "--break-lock", "ghost left it")
    assert broken.returncode == 0, broken.stderr
    record = json.loads(broken.stdout)["record"]
    assert record["lock_broken"]["operator"] == "ghost" and record["lock_broken"]["break_reason"] == "ghost left it"
    assert "no heartbeat" in record["lock_broken"]["gone"]


# ---- 9. Writes through ella-cli wait for the lock ---------------------------------------------

def test_cli_and_broadcast_writes_are_refused_while_the_lock_is_held(prod):
    prod.exec("p22-ella-01", f"mkdir {PROD_ROOT}/deploy/lock && echo '{{\"operator\": \"a release\", \"token\": \"t\", "
                             f"\"lease_seconds\": 90}}' > {PROD_ROOT}/deploy/lock/holder.json && "
                             f"touch {PROD_ROOT}/deploy/lock/heartbeat", user="ella")
    try:
        refused = run_cli("--inventory", "sandbox", "broadcast", "new", "Nedetid")
        assert refused.returncode == 75 and "deploy lock held by a release" in refused.stderr
        assert prod.psql("SELECT count(*) FROM broadcast;") == "0"
        # Reading needs no lock.
        assert run_cli("--inventory", "sandbox", "broadcast", "list").returncode == 0
    finally:
        prod.exec("p22-ella-01", f"rm -rf {PROD_ROOT}/deploy/lock", user="ella")


# ---- 12. No data on a command line --------------------------------------------------------------

def test_extra_vars_never_ride_on_the_command_line(prod):
    from ella_deploy import paths

    assert run_cli("--inventory", "sandbox", "broadcast", "new", "Planlagt nedetid 16-18").returncode == 0
    newest = sorted((paths.state_dir() / "runs").glob("*-cli-*"))[-1]
    command = json.loads((newest / "artifacts" / "run" / "command").read_text())["command"]
    assert not any("Planlagt" in part for part in command) and "-e" in command
    assert not (newest / "env" / "extravars").exists()
