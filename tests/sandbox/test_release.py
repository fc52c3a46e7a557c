"""`ella-deploy release` end to end on the sandbox: what changed is checked on the hosts and
in the database itself, not in what the tool says."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli
from tests.sandbox.conftest import api
from tests.sandbox_access import PROD_ROOT

pytestmark = pytest.mark.sandbox

REVISION = {"2.0.0": "4f1c2a9e7b30", "2.1.0": "8d3e5b71c0a2", "2.2.0": "c27a9f04e6d1"}
DATA_TABLES = ("analysis", "alleleassessment", "interpretationlog")


# ----- helpers ---------------------------------------------------------------------------
def data_fingerprint(sandbox) -> dict[str, str]:
    """Row count and a checksum of every row of the clinical tables."""
    return {
        table: sandbox.psql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') "
                            f"FROM {table} t;")
        for table in DATA_TABLES
    }


def revision(sandbox) -> str:
    return sandbox.psql("SELECT version_num FROM alembic_version;")


def live_link(sandbox) -> str:
    return sandbox.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip()


def running_images(sandbox, host: str) -> list[str]:
    processes = sandbox.exec(host, "ps -eo args").stdout.splitlines()
    return [p for p in processes if ".sif run" in p]


def storage_snapshot(sandbox) -> str:
    """Every path on the shared storage with its size, mode, mtime and link target."""
    return sandbox.exec(
        "p22-ella-01",
        f"cd {PROD_ROOT} && find . -path ./ella-prod/logs -prune -o -printf '%p %s %m %T@ %l\\n' | sort",
    ).stdout


def database_dump(sandbox) -> str:
    done = subprocess.run(
        ["podman", "exec", "--user", "postgres", sandbox.hosts["p22-ella-db"].container, "pg_dump", "ella"],
        capture_output=True, text=True, check=True,
    )
    # pg_dump writes a random \restrict key into every dump; it is not data.
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def supervisor_state(sandbox) -> dict[str, str]:
    config = f"{PROD_ROOT}/ops/supervisor/supervisor.cfg"
    return {
        host: sandbox.exec(host, f"supervisorctl -c {config} status ella", user="ella", check=False).stdout.split("uptime")[0]
        for host in ("p22-ella-01", "p22-ella-fo-01")
    }


def stage_fault_image(sandbox, version: str, fault: str) -> None:
    releases = sandbox.state_dir / "storage" / "sandbox" / "archive" / "releases"
    subprocess.run([sys.executable, str(ROOT / "testbed" / "build_standin.py"), "--out", str(releases),
                    "--fault", fault, version], check=True, capture_output=True)
    for path in releases.glob(f"ella-release-{version}.sif*"):
        os.chown(path, 1500, 1500)


def release(*args: str, staging_check: bool = False) -> tuple[subprocess.CompletedProcess[str], dict]:
    """A release on the sandbox's prod. These tests are about the release itself, so by default
    they skip the staging check (audited); test_production_needs_... covers it."""
    skip = [] if staging_check else ["--skip-staging-check"]
    result = run_cli("--inventory", "sandbox", "--output", "json", "release", *args, *skip)
    try:
        summary = json.loads(result.stdout) if result.stdout.strip() else {}
    except ValueError:
        summary = {}
    return result, summary


# ----- tests -----------------------------------------------------------------------------
def test_release_with_migrations_upgrades_and_keeps_every_row(prod):
    before = data_fingerprint(prod)
    result, summary = release("2.1.0", "--yes")
    assert result.returncode == 0, result.stderr
    assert summary["outcome"] == "success"

    assert revision(prod) == REVISION["2.1.0"]
    columns = prod.psql("SELECT column_name FROM information_schema.columns WHERE table_name = 'analysis';").split()
    assert "priority" in columns
    after = data_fingerprint(prod)
    # Row counts equal; the migration backfilled alleleassessment, analysis rows kept theirs.
    assert {t: v.split(":")[0] for t, v in after.items()} == {t: v.split(":")[0] for t, v in before.items()}
    assert prod.psql("SELECT count(*) FROM alleleassessment WHERE evaluation IS NULL;") == "0"

    assert live_link(prod) == "../archive/releases/ella-release-2.1.0.sif"
    assert api(prod, "/api/v1/config/")["app"]["version"] == "2.1.0"
    assert running_images(prod, "p22-ella-fo-01") == []
    assert prod.exec("p22-ella-01", f"test -e {PROD_ROOT}/deploy/lock", check=False).rc != 0
    broadcasts = prod.psql("SELECT message FROM broadcast WHERE active;")
    assert broadcasts.startswith("Akseptansetest pågår")

    record = prod.audit_records()[-1]
    assert (record["from_version"], record["to_version"], record["outcome"]) == ("2.0.0", "2.1.0", "success")
    assert record["change_kind"] == "minor"
    assert record["migrations"]["from_revision"] == REVISION["2.0.0"]
    assert record["migrations"]["to_revision"] == REVISION["2.1.0"]
    assert record["downtime_seconds"] > 0
    assert [s["name"] for s in record["steps"]][:3] == ["configure", "stop", "backup"]
    assert summary["downtime_seconds"] == record["downtime_seconds"]

    # The backup is what its record says, and restores into a scratch database.
    backup = record["backup"]["path"]
    on_disk = prod.exec("p22-ella-01", f"sha256sum {backup}").stdout.split()[0]
    assert on_disk == record["backup"]["sha256"]
    prod.psql("DROP DATABASE IF EXISTS restore_probe; CREATE DATABASE restore_probe OWNER ella;", "postgres")
    try:
        prod.exec("p22-ella-01",
                  f"PGPASSFILE={PROD_ROOT}/ops/pgpass pg_restore --exit-on-error --no-owner "
                  f"--dbname=postgresql://ella@p22-ella-db/restore_probe {backup}", user="ella")
        assert prod.psql("SELECT version_num FROM alembic_version;", "restore_probe") == REVISION["2.0.0"]
        restored = prod.psql("SELECT count(*) FROM analysis;", "restore_probe")
        assert restored == before["analysis"].split(":")[0]
    finally:
        prod.psql("DROP DATABASE IF EXISTS restore_probe WITH (FORCE);", "postgres")


def test_patch_release_runs_no_migration(prod):
    before = data_fingerprint(prod)
    result, summary = release("2.0.1", "--yes")
    assert result.returncode == 0, result.stderr
    assert summary["plan"]["change_kind"] == "patch"
    assert summary["plan"]["migrations_pending"] is False
    assert revision(prod) == REVISION["2.0.0"]
    assert data_fingerprint(prod) == before
    assert api(prod, "/api/v1/config/")["app"]["version"] == "2.0.1"


def test_patterns_resolve_to_the_newest_staged_match(prod):
    for request, expected in (("2.x", "2.2.0"), ("2.0.x", "2.0.1"), ("2.1.x", "2.1.0")):
        result, summary = release(request, "--check")
        assert result.returncode == 0, result.stderr
        assert summary["plan"]["version"] == expected
    text = run_cli("--inventory", "sandbox", "release", "2.x", "--check")
    assert "2.x -> 2.2.0" in text.stdout


def test_check_changes_nothing(prod):
    before = (storage_snapshot(prod), database_dump(prod), supervisor_state(prod), running_images(prod, "p22-ella-01"))
    result, summary = release("2.1.0", "--check")
    assert result.returncode == 0, result.stderr
    assert summary["plan"]["migrations_pending"] is True
    assert summary["plan"]["current_version"] == "2.0.0"
    after = (storage_snapshot(prod), database_dump(prod), supervisor_state(prod), running_images(prod, "p22-ella-01"))
    assert after == before


def test_failing_migration_rolls_back_with_the_data_intact(prod):
    stage_fault_image(prod, "2.2.1", "migration-fails")
    before = data_fingerprint(prod)
    result, summary = release("2.2.1", "--yes")
    assert result.returncode == 2
    assert summary["outcome"] == "rolled_back"
    assert "migrat" in " ".join(summary["errors"]).lower()

    # The migration had committed 2.1.0 and 2.2.0 before failing: the backup was restored.
    assert revision(prod) == REVISION["2.0.0"]
    assert data_fingerprint(prod) == before
    tables = prod.psql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public';").split()
    assert "annotationshadow" not in tables
    assert live_link(prod) == "../archive/releases/ella-release-2.0.0.sif"
    assert api(prod, "/api/v1/config/")["app"]["version"] == "2.0.0"
    record = prod.audit_records()[-1]
    assert record["outcome"] == "rolled_back"
    assert record["failure"]["step"] == "migrate"
    assert record["rollback"]["database"].startswith("restored from")


def test_image_that_never_gets_healthy_rolls_back(prod):
    stage_fault_image(prod, "2.0.2", "never-healthy")
    before = data_fingerprint(prod)
    result, summary = release("2.0.2", "--yes")
    assert result.returncode == 2
    assert summary["outcome"] == "rolled_back"
    record = prod.audit_records()[-1]
    assert record["failure"]["step"] == "start"
    assert record["rollback"]["database"].startswith("unchanged")
    assert data_fingerprint(prod) == before
    assert api(prod, "/api/v1/config/")["app"]["version"] == "2.0.0"
    assert len(running_images(prod, "p22-ella-01")) == 1


def test_wrong_checksum_is_refused_before_anything_changes(prod):
    checksum = f"{PROD_ROOT}/archive/releases/ella-release-2.1.0.sif.sha256"
    original = prod.exec("p22-ella-01", f"cat {checksum}", user="ella").stdout
    prod.exec("p22-ella-01", f"echo '{'0' * 64}  ella-release-2.1.0.sif' > {checksum}", user="ella")
    try:
        before = (storage_snapshot(prod), database_dump(prod), supervisor_state(prod))
        result, _ = release("2.1.0", "--yes")
        assert result.returncode == 75
        assert "sha256 mismatch" in result.stderr
        assert (storage_snapshot(prod), database_dump(prod), supervisor_state(prod)) == before
    finally:
        prod.exec("p22-ella-01", f"printf %s {json.dumps(original)} > {checksum}", user="ella")


def test_unknown_and_malformed_versions_are_refused(prod, tmp_path):
    result, _ = release("9.9.9", "--yes")
    assert result.returncode == 75
    assert "not staged" in result.stderr
    assert "Traceback" not in result.stderr

    # Malformed input is refused before any host is touched: no run at all.
    env = dict(os.environ, ELLA_DEPLOY_STATE_DIR=str(tmp_path))
    malformed = subprocess.run([sys.executable, "-m", "ella_deploy", "release", "2.1", "--yes"],
                               capture_output=True, text=True, env=env, cwd=ROOT)
    assert malformed.returncode == 64
    assert malformed.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_held_lock_refuses_a_second_release(prod):
    lock = f"{PROD_ROOT}/deploy/lock"
    prod.exec("p22-ella-01", f"mkdir -p {lock} && echo '{{\"operator\": \"kari@laptop\", \"since\": \"2026-11-25T10:00:00Z\", "
                             f"\"command\": \"ella-deploy release 2.1.0\", \"token\": \"x\"}}' > {lock}/holder.json", user="ella")
    try:
        result, _ = release("2.1.0", "--yes")
        assert result.returncode == 75
        assert "kari@laptop" in result.stderr
        assert revision(prod) == REVISION["2.0.0"]
    finally:
        prod.exec("p22-ella-01", f"rm -rf {lock}", user="ella")


def test_concurrent_releases_one_proceeds(prod):
    command = [sys.executable, "-m", "ella_deploy", "--inventory", "sandbox", "release", "2.1.0", "--yes",
               "--skip-staging-check"]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [process.communicate(timeout=600) for process in (first, second)]
    codes = sorted(process.returncode for process in (first, second))
    records = [r for r in prod.audit_records() if r.get("kind") == "release"]
    assert len(records) == 1 and records[0]["outcome"] == "success", outputs
    assert codes[0] == 0
    # The other was refused by the lock, or by its pre-flight guard (which saw the first one's
    # ELLA mid-change and could not call it stopped), or came after and found nothing to do.
    loser = outputs[[first.returncode, second.returncode].index(codes[1])] if codes[1] else None
    assert codes[1] == 0 or (codes[1] == 75 and ("deploy lock held by" in loser[1]
                                                 or "pre-flight: single-active guard says" in loser[1])), outputs
    assert revision(prod) == REVISION["2.1.0"]
    assert len(running_images(prod, "p22-ella-01")) == 1


def test_releasing_the_running_version_again_changes_nothing(prod):
    result, summary = release("2.1.0", "--yes")
    assert result.returncode == 0
    before = (storage_snapshot(prod), database_dump(prod), supervisor_state(prod), len(prod.audit_records()))
    again, summary = release("2.1.0", "--yes")
    assert again.returncode == 0
    assert summary["plan"]["change_kind"] == "none"
    after = (storage_snapshot(prod), database_dump(prod), supervisor_state(prod), len(prod.audit_records()))
    assert after == before


def test_no_secret_reaches_output_audit_or_artifacts(prod, tmp_path):
    secrets = [prod.secret("supervisor_password"), prod.secret("db_password_ella")]
    # A secret in the operator's own environment must not be copied into the artifacts either.
    env = dict(os.environ, ELLA_DEPLOY_STATE_DIR=str(tmp_path), PGPASSWORD=secrets[1])
    result = subprocess.run([sys.executable, "-m", "ella_deploy", "-vvv", "--inventory", "sandbox",
                             "release", "2.1.0", "--yes", "--skip-staging-check"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    searched = [("stdout", result.stdout), ("stderr", result.stderr),
                ("audit", prod.exec("p22-ella-01", f"cat {PROD_ROOT}/deploy/audit.jsonl").stdout)]
    runs = list((tmp_path / "runs").rglob("*"))
    assert any(p.name == "command" for p in runs)  # the artifacts are there to be searched
    searched += [(str(p), p.read_text(errors="replace")) for p in runs if p.is_file()]
    for secret in secrets:
        leaks = [name for name, text in searched if secret in text]
        assert leaks == [], f"secret found in {leaks}"


def test_production_needs_the_version_on_staging_first(prod):
    run_cli("sandbox", "reset", "sandbox-staging", check=True)
    refused, _ = release("2.1.0", "--yes", staging_check=True)
    assert refused.returncode == 75
    assert "2.1.0 is a minor change with no successful release on sandbox-staging on record" in refused.stderr
    assert revision(prod) == REVISION["2.0.0"]

    # What a CI job runs for a tag: staging, no terminal, no prompt, a JSON summary, exit 0.
    staged = subprocess.run([sys.executable, "-m", "ella_deploy", "--inventory", "sandbox-staging", "--output", "json",
                             "release", "2.1.0", "--yes"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "TERM"}, timeout=600)
    assert staged.returncode == 0, staged.stderr
    summary = json.loads(staged.stdout)
    assert (summary["version"], summary["outcome"]) == ("2.1.0", "success")
    assert summary["downtime_seconds"] > 0 and [s["name"] for s in summary["record"]["steps"]][:2] == [
        "configure", "stop"]

    released, summary = release("2.1.0", "--yes", staging_check=True)
    assert released.returncode == 0, released.stderr
    assert summary["record"]["staging_check"] == {"required": True, "verified": True, "skipped": False}
    assert revision(prod) == REVISION["2.1.0"]


def test_rehearsal_predicts_the_downtime_and_leaves_production_alone(prod):
    before, pid = data_fingerprint(prod), running_images(prod, "p22-ella-01")
    rehearsed = run_cli("--inventory", "sandbox", "--output", "json", "rehearse", "2.1.0")
    assert rehearsed.returncode == 0, rehearsed.stderr
    outcome = json.loads(rehearsed.stdout)
    assert outcome["migration_ok"] is True and float(outcome["migration_seconds"]) > 0
    predicted = outcome["predicted_downtime"]
    assert sorted(predicted["steps"]) == sorted(["stop", "backup", "switch", "migrate", "fixtures", "start"])
    assert predicted["seconds"] == round(sum(predicted["steps"].values()), 1)

    def untouched():
        assert revision(prod) == REVISION["2.0.0"] and data_fingerprint(prod) == before
        assert running_images(prod, "p22-ella-01") == pid
        assert prod.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_rehearse\\_%';", "postgres") == "0"
        assert prod.exec("p22-ella-01", f"ls -A {PROD_ROOT}/backups | grep -c rehearse", check=False).stdout.strip() == "0"

    untouched()
    plan = run_cli("--inventory", "sandbox", "release", "2.1.0", "--check", "--skip-staging-check")
    assert "last rehearsal  success" in plan.stdout

    stage_fault_image(prod, "2.1.1", "migration-fails")
    failed = run_cli("--inventory", "sandbox", "rehearse", "2.1.1")
    assert failed.returncode == 2
    assert "the migrations failed on the copy; production is untouched" in failed.stderr
    untouched()
    assert [r["outcome"] for r in prod.audit_records() if r["kind"] == "rehearsal"] == ["success", "failed"]
    assert run_cli("--inventory", "sandbox", "rehearse", "2.1").returncode == 64
