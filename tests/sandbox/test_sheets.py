"""The test sheets end to end on the sandbox: a release on sandbox-staging writes the
verification sheet, one on sandbox (which names sandbox-staging) the acceptance sheet, and
`accept --sheet` refuses it until every test is passed and signed, then keeps its sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import openpyxl

from ella_deploy import sheets
from tests.conftest import run_cli
from tests.sandbox.conftest import HEAD_1_16_5, alembic_head


def named(path: str, name: str) -> object:
    workbook = openpyxl.load_workbook(path)
    sheet_title, reference = next(iter(workbook.defined_names[name].destinations))
    return workbook[sheet_title][reference.replace("$", "")].value


def sign_every_test(path: str) -> None:
    workbook = openpyxl.load_workbook(path)
    sheet = workbook.active
    header = next(row[0].row for row in sheet.iter_rows(min_col=1, max_col=1) if row[0].value == "Test")
    for row in range(header + 1, header + 1 + len(sheets.DEFAULT_TESTS)):
        sheet.cell(row, 3, "OK")
        sheet.cell(row, 4, "KN")
    workbook.save(path)


def test_a_staging_release_writes_the_verification_sheet(sandbox, tmp_path):
    run_cli("sandbox", "reset", "sandbox-staging", check=True)
    released = run_cli("--inventory", "sandbox-staging", "--output", "json", "release", "1.17.0", "--yes",
                       env={"ELLA_DEPLOY_RECORDS_DIR": str(tmp_path)})
    assert released.returncode == 0, released.stderr
    path = json.loads(released.stdout)["test_sheet"]["path"]
    assert path == str(tmp_path / "sandbox-staging" / "Verifisering-ELLA-1.17.0.xlsx")
    assert named(path, "ella_environment") == "sandbox-staging"
    assert named(path, "ella_hotfix") == "Nei"


def test_accept_refuses_the_acceptance_sheet_until_every_test_is_passed(prod, tmp_path):
    records_dir = {"ELLA_DEPLOY_RECORDS_DIR": str(tmp_path)}
    released = run_cli("--inventory", "sandbox", "--output", "json", "release", "1.17.0", "--yes",
                       "--skip-staging-check", env=records_dir)
    assert released.returncode == 0, released.stderr
    path = json.loads(released.stdout)["test_sheet"]["path"]
    assert Path(path) == tmp_path / "sandbox" / "Akseptansetest-ELLA-1.17.0.xlsx"
    assert (named(path, "ella_version"), named(path, "ella_from_version")) == ("1.17.0", "1.16.5")
    assert named(path, "ella_migrations") == f"{HEAD_1_16_5} → {alembic_head('1.17.0')}"

    refused = run_cli("--inventory", "sandbox", "accept", "--sheet", path)
    assert refused.returncode == 75
    assert f"of {len(sheets.DEFAULT_TESTS)} tests not passed; no result: rows " in refused.stderr
    assert prod.psql("SELECT count(*) FROM broadcast WHERE active;") == "1"  # nothing was accepted

    sign_every_test(path)
    accepted = run_cli("--inventory", "sandbox", "accept", "--sheet", path, env=records_dir)
    assert accepted.returncode == 0, accepted.stderr
    assert prod.psql("SELECT count(*) FROM broadcast WHERE active;") == "0"
    record = prod.audit_records()[-1]
    assert record["kind"] == "accept"
    assert record["test_sheet"]["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert (record["test_sheet"]["passed"], record["test_sheet"]["forced"]) == (len(sheets.DEFAULT_TESTS), False)
