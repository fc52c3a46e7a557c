"""`db-task`: a data fix on real ELLA's tables runs in one transaction ella-deploy owns, guaranteed
by PostgreSQL (not by reading the script); --commit only when reviewed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.sandbox.conftest import EllaUser
from tests.sandbox_access import PROD_ROOT


AUTHOR = ("Ola Nordmann", "ola@ous-hf.no")
REVIEWER = ("Kari Nordmann", "kari@ous-hf.no")
FIX = """-- The toasts of the old page get the page's new address (reviewed data fix)
UPDATE uiexception SET location = location || '-fixed' WHERE message LIKE 'Diag-%';
SELECT md5('ella-task-' || id::text) AS fingerprint FROM uiexception ORDER BY id;
INSERT INTO broadcast (message, active, date_created) VALUES ('pages fixed; thanks', true, now());  -- a comment
"""


def write_clinical_data(sandbox, count: int) -> None:
    EllaUser(sandbox).report_errors(count, "Diag-")


def git(repo: Path, *args: str, who: tuple[str, str] = AUTHOR) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": who[0], "GIT_AUTHOR_EMAIL": who[1],
           "GIT_COMMITTER_NAME": who[0], "GIT_COMMITTER_EMAIL": who[1]}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def task(repo: Path, folder: str, sql: str) -> str:
    path = repo / "tasks" / folder / "fix.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)
    return str(path)


def db_task(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--inventory", "sandbox", "--output", "json", "db-task", *args)


def test_db_task_dry_run_review_and_commit(fresh, tmp_path):
    write_clinical_data(fresh, count=3)
    repo = tmp_path / "ops"
    repo.mkdir()
    git(repo, "init", "-q")
    script = task(repo, "20261125_fix_names", FIX)
    records = len(fresh.audit_records())

    # Dry run: counts and times, then everything rolled back.
    dry = db_task(script)
    assert dry.returncode == 0, dry.stderr
    statements = json.loads(dry.stdout)["statements"]
    assert [(s["tag"], s["rows"], s["line"]) for s in statements] == [
        ("UPDATE", 3, 2), ("SELECT", 3, 3), ("INSERT", 1, 4)]
    assert all(s["ms"] > 0 for s in statements)
    assert fresh.psql("SELECT count(*) FROM uiexception WHERE location LIKE '%-fixed';") == "0"
    assert fresh.psql("SELECT count(*) FROM broadcast;") == "0"
    record = fresh.audit_records()[-1]
    assert (record["kind"], record["mode"], record["outcome"]) == ("db-task", "dry-run", "success")
    assert record["sha256"] == hashlib.sha256(Path(script).read_bytes()).hexdigest()
    # What the SELECT printed stayed on the host: not in the output, the audit or the run's artifacts.
    fingerprint = hashlib.md5(b"ella-task-1").hexdigest()  # noqa: S324 - a test value, not security
    state = Path(os.environ.get("ELLA_DEPLOY_STATE_DIR") or Path.home() / ".local/state/ella-deploy")
    leaked = subprocess.run(["grep", "-rl", fingerprint, str(state)], capture_output=True, text=True)
    assert leaked.stdout == "" and fingerprint not in dry.stdout + dry.stderr + json.dumps(record)

    # --commit refuses what is not committed, not reviewed, or reviewed by its author only.
    untracked = db_task(script, "--commit")
    assert untracked.returncode == 75 and "is not committed" in untracked.stderr
    git(repo, "add", "tasks")
    git(repo, "commit", "-qm", "Fix the Diag analysis names")
    unreviewed = db_task(script, "--commit")
    assert unreviewed.returncode == 75 and "no Reviewed-by: trailer" in unreviewed.stderr
    git(repo, "commit", "-q", "--amend", "--no-edit", "--trailer", f"Reviewed-by: {AUTHOR[0]} <{AUTHOR[1]}>")
    self_reviewed = db_task(script, "--commit")
    assert self_reviewed.returncode == 75 and "reviewed only by its author" in self_reviewed.stderr
    git(repo, "commit", "-q", "--amend", "--no-edit", "--trailer", f"Reviewed-by: {REVIEWER[0]} <{REVIEWER[1]}>",
        who=REVIEWER)
    Path(script).write_text(FIX.replace("-fixed", "-changed"))
    modified = db_task(script, "--commit")
    assert modified.returncode == 75 and "uncommitted changes" in modified.stderr
    assert len(fresh.audit_records()) == records + 1  # refusals touched no host
    git(repo, "checkout", "--", "tasks")

    committed = db_task(script, "--commit")
    assert committed.returncode == 0, committed.stderr
    assert fresh.psql("SELECT count(*) FROM uiexception WHERE location LIKE '%-fixed';") == "3"
    assert fresh.psql("SELECT message FROM broadcast;") == "pages fixed; thanks"
    record = fresh.audit_records()[-1]
    assert (record["kind"], record["mode"], record["outcome"]) == ("db-task", "commit", "success")
    assert record["review"]["reviewers"] == [f"{AUTHOR[0]} <{AUTHOR[1]}>", f"{REVIEWER[0]} <{REVIEWER[1]}>"]
    backup = record["backup"]["path"]
    assert backup.startswith(f"{PROD_ROOT}/backups/") and backup.endswith("-to-task-20261125_fix_names.dump")
    # The backup was taken before the fix: its rows are the old ones.
    listing = fresh.exec("p22-ella-01", f"pg_restore --data-only --table=uiexception --file=- {backup}").stdout
    assert "/overview\t" in listing and "-fixed" not in listing


def test_db_task_that_fails_changes_nothing_and_shows_no_row(fresh, tmp_path):
    write_clinical_data(fresh, count=2)
    script = task(tmp_path, "20261126_broken",
                  "UPDATE uiexception SET location = '{{ 7*6 }} {% raw %}';\n"
                  "DO $$ BEGIN RAISE NOTICE 'notice-%', (SELECT message FROM uiexception LIMIT 1); END $$;\n"
                  "INSERT INTO usergroup (name) SELECT name FROM usergroup;\n")
    failed = db_task(script)
    assert failed.returncode == 2
    assert "statement 3 (line 3)" in failed.stderr
    assert 'duplicate key value violates unique constraint "uq_usergroup_name"' in failed.stderr
    assert fresh.psql("SELECT count(*) FROM uiexception WHERE location LIKE '{{%';") == "0"
    record = fresh.audit_records()[-1]
    assert record["outcome"] == "failed"
    # Text from the script is data: the braces reach the audit record as written.
    assert record["statements"][0]["summary"] == "UPDATE uiexception SET location = '{{ 7*6 }} {% raw %}'"
    # Neither the notice nor the key in the error's DETAIL (both row values) left the host.
    state = Path(os.environ.get("ELLA_DEPLOY_STATE_DIR") or Path.home() / ".local/state/ella-deploy")
    for value in ("notice-Diag-", "(name)=(testgroup"):
        assert value not in failed.stderr + failed.stdout + json.dumps(record)
        leaked = subprocess.run(["grep", "-rlF", value, str(state)], capture_output=True, text=True)
        assert leaked.stdout == "", leaked.stdout


@pytest.mark.parametrize(("folder", "sql", "message"), [
    ("20262511_swapped", "SELECT 1;", "20262511 is not a date (YYYYMMDD)"),
    ("fix_names", "SELECT 1;", "must be named YYYYMMDD_name"),
    ("20261125_commits", "UPDATE uiexception SET location = 'x';\nCOMMIT;\n",
     "line 2: COMMIT: the script must not manage"),
    ("20261125_meta", "SELECT 1;\n\\c other\n", "line 2: psql meta-command \\c is not allowed"),
])
def test_db_task_bad_input_is_one_line_before_any_host(sandbox, tmp_path, folder, sql, message):
    result = db_task(task(tmp_path, folder, sql))
    assert result.returncode == 64
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


SNEAKY = r"""SET standard_conforming_strings = off;
UPDATE uiexception SET location = 'a\''; COMMIT; UPDATE uiexception SET location = '--';
"""


def test_a_commit_hidden_from_the_checker_still_cannot_end_the_dry_run(fresh, tmp_path):
    """The checker reads strings as standard_conforming_strings=on does, so to it the COMMIT above
    is inside a string; with the setting off, a lexer that honours it (psql's) sees COMMIT as a
    statement. The guarantee comes from PostgreSQL: each statement the checker found runs by
    EXECUTE inside ella-deploy's transaction, where a transaction command, or a second command,
    is refused."""
    write_clinical_data(fresh, count=2)
    result = db_task(task(tmp_path, "20261127_sneaky", SNEAKY))
    assert fresh.psql("SELECT count(*) FROM uiexception WHERE location IN ('a''', '--');") == "0"
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert fresh.audit_records()[-1]["outcome"] == "failed"
