"""stage, accept and history on the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli
from tests.sandbox_access import PROD_ROOT

pytestmark = pytest.mark.sandbox

RELEASES = f"{PROD_ROOT}/archive/releases"


def build(tmp_path, version: str) -> str:
    subprocess.run([sys.executable, str(ROOT / "testbed" / "build_standin.py"), "--out", str(tmp_path), version],
                   check=True, capture_output=True)
    return str(tmp_path / f"ella-release-{version}.sif")


def test_stage_copies_verified_once_and_never_overwrites(prod, tmp_path):
    image = build(tmp_path, "2.3.0")
    first = run_cli("--inventory", "sandbox", "--output", "json", "stage", image)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["copied"] is True
    stat = prod.exec("p22-ella-fo-01", f"stat -c '%U %a' {RELEASES}/ella-release-2.3.0.sif").stdout.split()
    assert stat == ["ella", "644"]
    local = subprocess.run(["sha256sum", image], capture_output=True, text=True).stdout.split()[0]
    assert prod.exec("p22-ella-01", f"sha256sum {RELEASES}/ella-release-2.3.0.sif").stdout.split()[0] == local
    assert prod.exec("p22-ella-01", f"cat {RELEASES}/ella-release-2.3.0.sif.sha256").stdout.split()[0] == local

    mtime = prod.exec("p22-ella-01", f"stat -c %Y {RELEASES}/ella-release-2.3.0.sif").stdout
    again = run_cli("--inventory", "sandbox", "--output", "json", "stage", image)
    assert again.returncode == 0 and json.loads(again.stdout)["copied"] is False
    assert prod.exec("p22-ella-01", f"stat -c %Y {RELEASES}/ella-release-2.3.0.sif").stdout == mtime

    # Same name, other content (a rebuilt image): refused, the staged release untouched.
    other = tmp_path / "other"
    other.mkdir()
    rebuilt = subprocess.run([sys.executable, str(ROOT / "testbed" / "build_standin.py"), "--out", str(other),
                              "--fault", "never-healthy", "2.3.0"], check=True, capture_output=True)
    assert rebuilt.returncode == 0
    refused = run_cli("--inventory", "sandbox", "stage", str(other / "ella-release-2.3.0.sif"))
    assert refused.returncode != 0
    assert "never overwritten" in refused.stderr
    assert prod.exec("p22-ella-01", f"sha256sum {RELEASES}/ella-release-2.3.0.sif").stdout.split()[0] == local


def test_stage_refuses_a_corrupt_image_before_touching_a_host(prod, tmp_path):
    image = build(tmp_path, "2.3.1")
    with open(image, "ab") as handle:
        handle.write(b"corrupted in transfer")
    result = run_cli("--inventory", "sandbox", "stage", image)
    assert result.returncode == 75
    assert "does not match its .sha256" in result.stderr
    assert prod.exec("p22-ella-01", f"test -e {RELEASES}/ella-release-2.3.1.sif", check=False).rc != 0


def test_release_with_image_stages_then_releases(prod, tmp_path):
    image = build(tmp_path, "2.0.3")
    result = run_cli("--inventory", "sandbox", "--output", "json", "release", "2.0.3", "--image", image, "--yes")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "success"
    assert prod.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip().endswith("2.0.3.sif")


def test_accept_takes_down_the_broadcast_and_history_shows_both(prod):
    released = run_cli("--inventory", "sandbox", "release", "2.1.0", "--yes", "--skip-staging-check")
    assert released.returncode == 0, released.stderr
    assert prod.psql("SELECT count(*) FROM broadcast WHERE active;") == "1"
    accepted = run_cli("--inventory", "sandbox", "accept")
    assert accepted.returncode == 0, accepted.stderr
    assert prod.psql("SELECT count(*) FROM broadcast WHERE active;") == "0"
    kinds = [(r["kind"], r["outcome"]) for r in prod.audit_records()]
    assert kinds == [("release", "success"), ("accept", "success")]

    history = run_cli("--inventory", "sandbox", "history")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert "2.0.0 -> 2.1.0 (minor)" in lines[1] and "success" in lines[1]
    assert lines[2].split()[2] == "accept"


def test_cli_runs_in_the_live_image_on_the_active_host(prod):
    listed = run_cli("--inventory", "sandbox", "cli", "--", "database", "current")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == prod.psql("SELECT version_num FROM alembic_version;")
    refused = run_cli("--inventory", "sandbox", "cli", "--", "database", "upgrade", "head")
    assert refused.returncode == 64


def test_broadcast_new_list_deactivate(prod):
    posted = run_cli("--inventory", "sandbox", "broadcast", "new", "Nedetid fredag 16–18: ny versjon av ELLA")
    assert posted.returncode == 0, posted.stderr
    broadcast_id = posted.stdout.strip()
    assert prod.psql(f"SELECT message FROM broadcast WHERE id = {int(broadcast_id)} AND active;") == (
        "Nedetid fredag 16–18: ny versjon av ELLA")
    listed = run_cli("--inventory", "sandbox", "broadcast", "list")
    assert "Nedetid fredag" in listed.stdout
    assert run_cli("--inventory", "sandbox", "broadcast", "deactivate", broadcast_id).returncode == 0
    assert prod.psql(f"SELECT active FROM broadcast WHERE id = {int(broadcast_id)};") == "f"
    kinds = [(r["kind"], r["args"][:2]) for r in prod.audit_records()]
    assert kinds == [("cli", ["broadcast", "new"]), ("cli", ["broadcast", "deactivate"])]  # list is not audited


def test_backup_on_its_own_with_a_verified_restore(prod):
    result = run_cli("--inventory", "sandbox", "--output", "json", "backup", "--verify-restore")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    path = record["backup"]["path"]
    assert path.endswith("-2.0.0-to-manual.dump")
    assert prod.exec("p22-ella-01", f"sha256sum {path}").stdout.split()[0] == record["backup"]["sha256"]
    assert prod.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_verify\\_%';", "postgres") == "0"
    # The restore held every row: 12 analyses with an assessment and a log line each, the revision row.
    counts = record["backup"]["row_counts"]
    assert counts["differences"] == {}
    assert int(counts["rows"]) == int(prod.psql(
        "SELECT (SELECT count(*) FROM analysis) + (SELECT count(*) FROM alleleassessment)"
        " + (SELECT count(*) FROM interpretationlog) + (SELECT count(*) FROM alembic_version)"
        " + (SELECT count(*) FROM broadcast) + (SELECT count(*) FROM usergroup)"
        " + (SELECT count(*) FROM filterconfig) + (SELECT count(*) FROM uiexception);")) >= 37
    assert prod.audit_records()[-1]["kind"] == "backup"
    # ELLA kept running.
    assert "ella-release-2.0.0.sif run" in prod.exec("p22-ella-01", "ps -eo args").stdout


def test_logs_show_the_api_log_of_the_active_host(prod):
    result = run_cli("--inventory", "sandbox", "--output", "json", "logs", "--since", "10m")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["host"] == "p22-ella-01"
    assert any('"POST /api/v1/analyses/ HTTP/1.1" 201' in line for line in report["lines"])


def test_logs_follow_prints_new_lines_until_interrupted(sandbox):
    import select
    import signal
    import time
    import uuid

    from tests.conftest import CLI

    follow = subprocess.Popen([*CLI, "--inventory", "sandbox", "logs", "--host", "p22-ella-01", "--follow",
                               "--lines", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marker = f"follow-{uuid.uuid4()}"
        deadline, seen = time.monotonic() + 30, []
        while time.monotonic() < deadline and not any(marker in line for line in seen):
            if not seen:
                # The first line (the log's last one) shows that tail runs; then write the marker.
                ready, _, _ = select.select([follow.stdout], [], [], 1)
                if ready:
                    seen.append(follow.stdout.readline())
                    sandbox.exec("p22-ella-01", f"echo '{marker}' >> {PROD_ROOT}/ella-prod/logs/api.log", user="ella")
                continue
            ready, _, _ = select.select([follow.stdout], [], [], 1)
            if ready:
                seen.append(follow.stdout.readline())
        assert any(marker in line for line in seen), (seen, follow.stderr.read() if follow.poll() else "")
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=15)
    assert follow.returncode == 0
    refused = run_cli("--inventory", "sandbox", "logs", "--follow", "--since", "10m")
    assert refused.returncode == 64
