"""Daily operations against real ELLA: stage (ELLA's release files come without a checksum),
release --image, ella-cli in the live image, broadcasts by ELLA's own word, a backup on its own
with a verified restore, logs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess


from ella_deploy import paths
from tests.conftest import ROOT, run_cli
from tests.sandbox.conftest import HEAD_1_16_5, RELEASES, revision
from tests.sandbox_access import PROD_ROOT


def staged_copy(sandbox, tmp_path, version: str, name: str) -> str:
    """A release file as it comes from ELLA's release page: a copy of a built image, no .sha256."""
    target = tmp_path / name
    shutil.copyfile(sandbox.storage(f"archive/releases/ella-release-v{version}.sif"), target)
    return str(target)


def test_stage_takes_a_release_without_checksum_writes_one_and_never_overwrites(prod, tmp_path):
    # ELLA 1.17.2 published again under a new patch number, as a release file comes: no .sha256.
    image = staged_copy(prod, tmp_path, "1.17.2", "ella-release-v1.17.3.sif")
    first = run_cli("--inventory", "sandbox", "--output", "json", "stage", image)
    assert first.returncode == 0, first.stderr
    staged = json.loads(first.stdout)
    assert staged["copied"] is True and staged["sha256_source"] == "measured (no .sha256 published)"
    local = subprocess.run(["sha256sum", image], capture_output=True, text=True).stdout.split()[0]
    assert prod.exec("p22-ella-fo-01", f"stat -c '%U %a' {RELEASES}/ella-release-v1.17.3.sif").stdout.split() \
        == ["ella", "644"]
    assert prod.exec("p22-ella-01", f"cat {RELEASES}/ella-release-v1.17.3.sif.sha256").stdout.split()[0] == local
    again = run_cli("--inventory", "sandbox", "--output", "json", "stage", image)
    assert again.returncode == 0 and json.loads(again.stdout)["copied"] is False
    # Same name, other content: refused, the staged release untouched.
    other = staged_copy(prod, tmp_path, "1.17.1", "x.sif")
    renamed = tmp_path / "other" / "ella-release-v1.17.3.sif"
    renamed.parent.mkdir()
    shutil.move(other, renamed)
    refused = run_cli("--inventory", "sandbox", "stage", str(renamed))
    assert refused.returncode != 0 and "never overwritten" in refused.stderr
    assert prod.exec("p22-ella-01", f"sha256sum {RELEASES}/ella-release-v1.17.3.sif").stdout.split()[0] == local


def test_stage_refuses_what_is_no_image_or_not_its_checksum_before_any_host(prod, tmp_path):
    junk = tmp_path / "ella-release-v1.17.4.sif"
    junk.write_text("not an image")
    refused = run_cli("--inventory", "sandbox", "stage", str(junk))
    assert refused.returncode == 64 and "not a Singularity image" in refused.stderr
    image = staged_copy(prod, tmp_path, "1.17.2", "ella-release-v1.17.5.sif")
    (tmp_path / "ella-release-v1.17.5.sif.sha256").write_text("0" * 64 + "  ella-release-v1.17.5.sif\n")
    refused = run_cli("--inventory", "sandbox", "stage", image)
    assert refused.returncode == 75 and "does not match its .sha256" in refused.stderr
    assert prod.exec("p22-ella-01", f"test -e {RELEASES}/ella-release-v1.17.5.sif", check=False).rc != 0


def test_cli_runs_in_the_live_image_and_broadcasts_go_by_ellas_own_word(prod):
    current = run_cli("--inventory", "sandbox", "cli", "--", "database", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.split()[0] == HEAD_1_16_5 == revision(prod)  # ELLA prints "<rev> (head)"
    assert run_cli("--inventory", "sandbox", "cli", "--", "database", "upgrade", "head").returncode == 64
    posted = run_cli("--inventory", "sandbox", "broadcast", "new", "Nedetid fredag 16–18: ny versjon av ELLA")
    assert posted.returncode == 0, posted.stderr
    broadcast_id = int(re.search(r"Message with id (\d+) added", posted.stdout).group(1))
    assert prod.psql(f"SELECT message FROM broadcast WHERE id = {broadcast_id} AND active;") \
        == "Nedetid fredag 16–18: ny versjon av ELLA"
    assert "Nedetid fredag" in run_cli("--inventory", "sandbox", "broadcast", "list").stdout
    assert run_cli("--inventory", "sandbox", "broadcast", "deactivate", str(broadcast_id)).returncode == 0
    assert prod.psql(f"SELECT active FROM broadcast WHERE id = {broadcast_id};") == "f"
    # ELLA exits 0 for an id it does not know ("Found no message with id 999"): not done.
    missing = run_cli("--inventory", "sandbox", "broadcast", "deactivate", "999")
    assert missing.returncode != 0 and "changed nothing" in missing.stderr
    # ELLA's ella-cli would glob a *: refused before any host.
    assert run_cli("--inventory", "sandbox", "broadcast", "new", "Nede *").returncode == 64
    records = [r for r in prod.audit_records() if r["kind"] == "cli"]
    assert [r["args"] for r in records] == [["broadcast", "new"], ["broadcast", "deactivate"],
                                            ["broadcast", "deactivate"]]
    assert all("Nedetid" not in json.dumps(r) for r in records)  # the message is data: only its sha256

    # A new password ELLA prints reaches the operator's terminal once, and nothing else: no
    # run's artifacts, no audit record, no file left on the host.
    reset = run_cli("--inventory", "sandbox", "cli", "--", "users", "reset_password", "testuser2")
    assert reset.returncode == 0, reset.stderr
    password = re.search(r"with password (\S+)", reset.stdout).group(1)
    assert len(password) >= 8 and "*" not in password
    runs = paths.state_dir() / "runs"

    def artifacts_with(text: str) -> str:
        return subprocess.run(["grep", "-rlF", text, str(runs)], capture_output=True, text=True).stdout

    assert artifacts_with("users reset_password testuser2")  # (the run's own artifacts are searched)
    assert artifacts_with(password) == ""
    assert password not in json.dumps(prod.audit_records())
    assert password not in reset.stderr
    assert prod.exec("p22-ella-01", "ls /tmp | grep -c ella-cli-output || true").stdout.strip() == "0"


def test_backup_on_its_own_with_a_verified_restore_while_ella_runs(prod):
    # What earlier days left in backups/: six manual backups and a dump cut short (no manifest).
    backups = f"{PROD_ROOT}/backups"
    earlier = [f"sandbox-2026110{day}T100000Z-1.16.5-to-manual.dump" for day in range(1, 7)]
    cut = "sandbox-20261107T100000Z-1.16.5-to-manual.dump"
    plant = " && ".join(f"echo PGDMP > {backups}/{name} && echo {{}} > {backups}/{name}.manifest.json"
                        for name in earlier)
    prod.exec("p22-ella-01", f"mkdir -p {backups} && {plant} && echo PGD > {backups}/{cut}", user="ella")
    result = run_cli("--inventory", "sandbox", "--output", "json", "backup", "--verify-restore")
    assert result.returncode == 0, result.stderr
    backup = json.loads(result.stdout)["backup"]
    # Pruned by kind (tests/unit/test_prune.py has the rest): the cut dump at once, the manual
    # ones to their newest five, this one among them.
    kept = prod.exec("p22-ella-01", f"ls {backups}", user="ella").stdout.split()
    assert cut not in kept and backup["path"].rsplit("/", 1)[1] in kept
    assert [name for name in earlier if name in kept] == earlier[2:]
    assert backup["path"].endswith("-1.16.5-to-manual.dump") and backup["revision"] == HEAD_1_16_5
    assert backup["verified"] == "restored completely into a scratch database, row counts equal"
    assert prod.exec("p22-ella-01", f"sha256sum {backup['path']}").stdout.split()[0] == backup["sha256"]
    assert not [d for d in prod.databases() if "_verify_" in d]
    manifest = json.loads(prod.exec("p22-ella-01", f"cat {backup['path']}.manifest.json").stdout)
    assert manifest["row_counts"]["uiexception"] == 5 and manifest["row_counts"]["genepanel"] == 4
    assert prod.audit_records()[-1]["kind"] == "backup"
    assert "api.main:app" in prod.exec("p22-ella-01", "ps -eo args").stdout  # ELLA kept running


def test_logs_show_ellas_logs_of_the_active_host(prod):
    result = run_cli("--inventory", "sandbox", "--output", "json", "logs", "--program", "nginx", "--since", "10m")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["host"] == "p22-ella-01"
    assert any('"POST /api/v1/ui/exceptionlog/ HTTP/1.1" 200' in line for line in report["lines"])
    api_log = run_cli("--inventory", "sandbox", "--output", "json", "logs", "--lines", "50")
    assert any("api.main:app" in line or "GET /api/v1/" in line for line in json.loads(api_log.stdout)["lines"])
    assert run_cli("--inventory", "sandbox", "logs", "--host", "p22-ella-99").returncode == 64


def test_logs_follow_prints_new_lines_until_interrupted(sandbox):
    import select
    import signal
    import time
    import uuid

    from tests.conftest import CLI
    from tests.sandbox_access import PROD_ROOT

    follow = subprocess.Popen([*CLI, "--inventory", "sandbox", "logs", "--host", "p22-ella-01", "--follow",
                               "--lines", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marker = f"follow-{uuid.uuid4()}"
        deadline, seen = time.monotonic() + 30, []
        while time.monotonic() < deadline and not any(marker in line for line in seen):
            ready, _, _ = select.select([follow.stdout], [], [], 1)
            if ready:
                seen.append(follow.stdout.readline())
                if len(seen) == 1:
                    sandbox.exec("p22-ella-01", f"echo '{marker}' >> {PROD_ROOT}/ella-prod/logs/api.log", user="ella")
        assert any(marker in line for line in seen), (seen, follow.stderr.read() if follow.poll() else "")
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=15)
    assert follow.returncode == 0
    assert run_cli("--inventory", "sandbox", "logs", "--follow", "--since", "10m").returncode == 64
