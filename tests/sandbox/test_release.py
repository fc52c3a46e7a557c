"""Releases of ELLA's real versions on the sandbox: 1.16.5 -> 1.17.0 (a minor release, two real
migrations), 1.17.1 (a patch, the hotfix path), 1.17.2 (a patch with a migration), patterns,
the plan, the pre-flight, and rollbacks of releases broken on purpose.

Every assertion is on what is really there: alembic_version, rows and checksums of ELLA's
tables, processes on the hosts, files on the shared storage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import openpyxl

from ella_deploy import sheets
from tests.conftest import run_cli
from tests.sandbox.conftest import (
    HEAD_1_16_5, EllaUser, alembic_head, api, release, revision, running_image, stage_fault,
    table_checksums,
)
from tests.sandbox_access import PROD_ROOT


def named(path: str, name: str) -> object:
    """A named cell of a test sheet (the names ella_deploy/sheets.py gives them)."""
    workbook = openpyxl.load_workbook(path)
    sheet_title, reference = next(iter(workbook.defined_names[name].destinations))
    return workbook[sheet_title][reference.replace("$", "")].value


def sign_every_test(path: str) -> None:
    """Every test on the sheet passed and signed, as a tester fills it in."""
    workbook = openpyxl.load_workbook(path)
    sheet = workbook.active
    header = next(row[0].row for row in sheet.iter_rows(min_col=1, max_col=1) if row[0].value == "Test")
    for row in range(header + 1, header + 1 + len(sheets.DEFAULT_TESTS)):
        sheet.cell(row, 3, "OK")
        sheet.cell(row, 4, "KN")
    workbook.save(path)


def test_a_release_journey_staging_minor_accept_hotfix_patch(prod, tmp_path):
    """Production's releases of a year in one sandbox session, each step asserted where it
    stands: refusals before anything changes, the minor release after staging (its
    verification sheet), the acceptance sheet, accept refused until every test on it is passed,
    then accepted, the same version again, two patches, patterns; one sandbox reset for all of
    it (each release costs most of a minute of the suite)."""
    records_dir = {"ELLA_DEPLOY_RECORDS_DIR": str(tmp_path)}
    # -- Refused before anything changes: a checksum that does not match, no staging release.
    checksum = prod.storage("archive/releases/ella-release-v1.17.0.sif.sha256")
    checksum.write_text("0" * 64 + "  ella-release-v1.17.0.sif\n")
    try:
        code, _, stderr = release("1.17.0", "--skip-staging-check")
    finally:
        checksum.unlink()
    assert code == 75 and "sha256 mismatch" in stderr
    code, _, stderr = release("1.17.0")
    assert code == 75 and "no successful release on sandbox-staging" in stderr
    assert revision(prod) == HEAD_1_16_5 and running_image(prod) == "ella-release-v1.16.5.sif"

    # -- Staging first, the way a CI job deploys a tag there: no terminal, --yes, --output json.
    staged = run_cli("--inventory", "sandbox-staging", "--output", "json", "release", "1.17.0", "--yes",
                     env=records_dir)
    assert staged.returncode == 0, staged.stderr
    assert revision(prod, "ella_staging") == "92066141f180"
    # Staging's release writes the verification sheet.
    path = json.loads(staged.stdout)["test_sheet"]["path"]
    assert path == str(tmp_path / "sandbox-staging" / "Verifisering-ELLA-1.17.0.xlsx")
    assert named(path, "ella_environment") == "sandbox-staging" and named(path, "ella_hotfix") == "Nei"

    # -- The minor release: ELLA's config schema changed in 1.17.0, the release switches
    # ella_config.yml with the image.
    before = table_checksums(prod)
    code, summary, stderr = release("1.17.0", env=records_dir)
    assert code == 0, stderr
    record = summary["record"]
    assert record["outcome"] == "success" and record["change_kind"] == "minor"
    # Production's release writes the acceptance sheet, filled from the record.
    sheet = summary["test_sheet"]["path"]
    assert Path(sheet) == tmp_path / "sandbox" / "Akseptansetest-ELLA-1.17.0.xlsx"
    assert (named(sheet, "ella_version"), named(sheet, "ella_from_version")) == ("1.17.0", "1.16.5")
    assert named(sheet, "ella_migrations") == f"{HEAD_1_16_5} → {alembic_head('1.17.0')}"
    assert record["staging_check"] == {"required": True, "verified": True, "skipped": False}
    assert revision(prod) == alembic_head("1.17.0") == "92066141f180"
    assert record["migrations"]["from_revision"] == HEAD_1_16_5 and record["migrations"]["to_revision"] == "92066141f180"
    assert record["migrations"]["applied"] and all("Running upgrade" not in a for a in record["migrations"]["applied"])
    # What users wrote is there, row for row; the migrated tables changed as ELLA's migrations say.
    after = table_checksums(prod)
    assert after["uiexception"] == before["uiexception"] and after["usersession"] == before["usersession"]
    assert prod.psql("SELECT count(*) FROM uiexception WHERE message LIKE 'before the release %';") == "5"
    # ELLA serves from the new image, with the configuration the new image checked.
    assert running_image(prod) == "ella-release-v1.17.0.sif"
    assert "allow_technical" not in prod.storage("ella-prod/data/ella_config.yml").read_text()
    assert api(prod, "/api/v1/config/")["app"]["annotation_service"] == "http://127.0.0.1:6000"
    # The broadcast id is ELLA's own, and the banner is up.
    broadcast = record["broadcast_id"]
    assert prod.psql(f"SELECT active FROM broadcast WHERE id = {int(broadcast)};") == "t"
    # The rollback point is kept until accept; the procedure's backup was taken from it.
    point = record["rollback_point"]["database"]
    assert point in prod.databases() and revision(prod, point) == HEAD_1_16_5
    backup = record["backup"]
    assert backup["revision"] == HEAD_1_16_5 and backup["verified"] == "read back completely"
    assert prod.exec("p22-ella-01", f"sha256sum {backup['path']}").stdout.split()[0] == backup["sha256"]
    manifest = json.loads(prod.exec("p22-ella-01", f"cat {backup['path']}.manifest.json").stdout)
    assert manifest["row_counts"]["uiexception"] == 5
    # Downtime: from the stop until the new version served, measured on the host.
    steps = {s["name"]: s for s in record["steps"]}
    assert {"stop", "rollback_point", "switch", "migrate", "start"} <= set(steps)
    assert 0 < record["downtime_seconds"] <= steps["start"]["end"] - steps["stop"]["start"] + 0.01
    # The users keep working in the new version.
    assert EllaUser(prod).report_errors(1, "after the release") == ["after the release 0"]

    # -- Accept with the acceptance sheet: refused until every test on it is passed and signed.
    refused = run_cli("--inventory", "sandbox", "accept", "--sheet", sheet)
    assert refused.returncode == 75
    assert f"of {len(sheets.DEFAULT_TESTS)} tests not passed; no result: rows " in refused.stderr
    assert prod.psql(f"SELECT active FROM broadcast WHERE id = {int(broadcast)};") == "t"
    assert point in prod.databases()
    # Then the banner goes down by the id ELLA gave, the rollback point is dropped, and the
    # record keeps the sheet's sha256; once only.
    sign_every_test(sheet)
    accepted = run_cli("--inventory", "sandbox", "--output", "json", "accept", "--sheet", sheet, env=records_dir)
    assert accepted.returncode == 0, accepted.stderr
    assert prod.psql(f"SELECT active FROM broadcast WHERE id = {int(broadcast)};") == "f"
    assert point not in prod.databases()
    accept_record = prod.audit_records()[-1]
    assert accept_record["kind"] == "accept"
    assert accept_record["test_sheet"]["sha256"] == hashlib.sha256(Path(sheet).read_bytes()).hexdigest()
    assert (accept_record["test_sheet"]["passed"], accept_record["test_sheet"]["forced"]) == \
        (len(sheets.DEFAULT_TESTS), False)
    again = run_cli("--inventory", "sandbox", "accept")
    assert again.returncode == 75 and "1.17.0 was accepted already" in again.stderr, again.stderr

    # -- The same version again changes nothing, and leaves the closed journal as it was.
    journal = prod.journal()
    code, summary, stderr = release("1.17.0")
    assert code == 0 and summary["outcome"] == "nothing_to_do", stderr
    assert prod.journal() == journal and journal["phase"] == "done"

    # -- 1.17.1 is a patch without migrations: a hotfix, no staging release needed.
    before = table_checksums(prod)
    code, summary, stderr = release("1.17.1")
    assert code == 0, stderr
    record = summary["record"]
    assert record["change_kind"] == "patch" and record["migrations"]["pending"] is False
    assert "migrate" not in {s["name"] for s in record["steps"]}
    after = table_checksums(prod)
    # Only the rows a release itself writes: the broadcast and ella-cli's own log.
    changed = {t for t in after if after[t] != before.get(t)}
    assert changed <= {"broadcast", "clilog", "usersession"}, changed
    assert running_image(prod) == "ella-release-v1.17.1.sif"
    # -- 1.17.2 is a patch with a migration: it ends at the head of its own migration files.
    code, summary, stderr = release("1.17.2")
    assert code == 0, stderr
    assert summary["record"]["change_kind"] == "patch" and summary["record"]["migrations"]["applied"]
    assert revision(prod) == alembic_head("1.17.2") == "4c2844fef850"
    assert running_image(prod) == "ella-release-v1.17.2.sif"
    # Two releases not accepted: only the newest rollback point is kept (the earlier one can
    # never be restored over a version that went live).
    copies = [name for name in prod.databases() if name.startswith("ella_rollback_")]
    assert copies == [summary["record"]["rollback_point"]["database"]]
    # The sandbox keeps 2 backups (inventories/sandbox): the oldest went with its manifest.
    dumps = sorted(p.name for p in prod.storage("backups").glob("*.dump"))
    manifests = sorted(p.name for p in prod.storage("backups").glob("*.manifest.json"))
    assert len(dumps) == 2 and manifests == [f"{d}.manifest.json" for d in dumps]
    assert prod.storage("backups/LAST_SUCCESSFUL").read_text().strip() == summary["record"]["backup"]["path"].rsplit("/", 1)[-1]

    # -- A pattern takes the newest staged release, never a fault image; v-prefixed tags too.
    stage_fault(prod, "never-healthy")
    code, summary, stderr = release("1.17.x", "--check")
    assert code == 0 and summary["plan"]["version"] == "1.17.2", stderr
    assert release("v1.17.2", "--check")[1]["plan"]["version"] == "1.17.2"
    run_cli("sandbox", "reset", "sandbox-staging", check=True)


def ella_pid(sandbox, host: str = "p22-ella-01") -> str:
    return sandbox.exec(host, "pgrep -f '^Singularity runtime parent'", user="ella", check=False).stdout.strip()


def test_rehearse_and_check_measure_and_plan_while_production_serves_untouched(prod):
    before = table_checksums(prod)
    link = prod.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip()
    serving = ella_pid(prod)
    databases = prod.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database;")

    # The rehearsal: ELLA 1.17.0's own migrations on a copy, timed, while 1.16.5 keeps serving.
    rehearsed = run_cli("--inventory", "sandbox", "--output", "json", "rehearse", "1.17.0", timeout=900)
    assert rehearsed.returncode == 0, rehearsed.stderr
    outcome = json.loads(rehearsed.stdout)
    assert outcome["migration_ok"] is True and outcome["outcome"] == "success"
    assert int(outcome["dump_bytes"]) > 100_000 and int(outcome["rows"]) > 0
    assert float(outcome["migration_seconds"]) > 0 and float(outcome["rollback_point_seconds"]) > 0
    predicted = outcome["predicted_downtime"]
    # (A JSON object's keys come back from Ansible in its order, not the window's.)
    assert set(predicted["steps"]) == {"stop", "rollback_point", "switch", "migrate", "fixtures", "guard_start",
                                       "start"}
    # A failing migration is said, and leaves production as it was too.
    broken = stage_fault(prod, "migration-fails")
    failed = run_cli("--inventory", "sandbox", "--output", "json", "rehearse", broken, timeout=900)
    assert failed.returncode == 2 and "fa11ed000001" in failed.stderr + failed.stdout, failed.stderr

    # The plan: what a release would do, with the last rehearsal; nothing changes.
    code, summary, _ = release("1.17.0", "--check", "--skip-staging-check")
    plan = summary["plan"]
    assert code == 0
    assert plan["migrations_pending"] is True and plan["revision"] == HEAD_1_16_5
    assert plan["target_revision"] == "92066141f180" and plan["config_changed"] is True
    assert plan["rehearsal"]["version"] == "1.17.0" and plan["rehearsal"]["migration_ok"] in (True, "True")
    # Real release files come without a .sha256: the plan measures the image's.
    assert plan["image_sha256_source"] == "measured (no .sha256 published)" and len(plan["image_sha256"]) == 64

    # Production served throughout: the same process, the same data, no copy or dump left.
    assert ella_pid(prod) == serving != ""
    assert prod.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip() == link
    assert table_checksums(prod) == before and revision(prod) == HEAD_1_16_5
    assert prod.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database;") == databases
    assert not prod.storage("backups/.rehearsal.dump").exists()
    assert not prod.storage("backups/.rehearsal.dump.manifest.json").exists()
    assert not prod.storage("deploy/journal.json").exists()
    kinds = [json.loads(line)["kind"] for line in prod.storage("deploy/audit.jsonl").read_text().splitlines()]
    assert kinds.count("rehearsal") == 2


def test_a_migration_that_fails_rolls_back_to_the_previous_version_on_its_data(prod):
    version = stage_fault(prod, "migration-fails")
    before = table_checksums(prod)
    code, summary, stderr = release(version, "--skip-staging-check")
    assert code == 2, stderr
    record = summary["record"]
    assert record["outcome"] == "rolled_back"
    assert "ella-cli database upgrade head exited 1" in record["failure"]["message"]
    assert revision(prod) == HEAD_1_16_5 and table_checksums(prod) == before
    assert running_image(prod) == "ella-release-v1.16.5.sif"
    assert not [d for d in prod.databases() if d.startswith(("ella_rollback_", "ella_failed_"))]  # prod's own
    assert "allow_technical" in prod.storage("ella-prod/data/ella_config.yml").read_text()
    # The previous version serves the users again.
    assert EllaUser(prod).report_errors(1, "after the rollback") == ["after the rollback 0"]


def test_unknown_and_malformed_versions_are_refused_in_one_line(prod):
    # Malformed: one line, before any host is touched.
    for version in ("1.17", "1.17.0\n", "latest", "1.17.x.1"):
        done = run_cli("--inventory", "sandbox", "release", version, "--yes")
        assert done.returncode == 64, (version, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    # Well-formed but not staged: only the host can tell; the progress lines, then one refusal.
    done = run_cli("--inventory", "sandbox", "release", "1.9.9", "--yes")
    assert done.returncode == 75 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ella-deploy:")]
    assert errors == [done.stderr.strip().splitlines()[-1]] and "ella-release-v1.9.9.sif is not staged" in errors[0]


