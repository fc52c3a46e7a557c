"""Test sheets (.xlsx) from audit records: filled cells, empty test rows, hand edits kept,
site templates by defined names, and the judgement `accept --sheet` makes of them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openpyxl
import pytest
from openpyxl.workbook.defined_name import DefinedName

from ella_deploy import cli, paths, sheets
from ella_deploy.errors import EllaDeployError, ExitCode

T0 = 1_764_000_000.0


def release(version: str = "2.1.0", kind: str = "minor", **extra) -> dict:
    return {"kind": "release", "outcome": "success", "environment": "prod", "to_version": version,
            "from_version": "2.0.0", "change_kind": kind, "started": T0 - 30, "finished": T0,
            "operator": "ola@p22-submit", "host": "p22-ella-01", "downtime_seconds": 9.6,
            "migrations": {"pending": True, "from_revision": "4f1c2a9e7b30", "to_revision": "8d3e5b71c0a2"},
            **extra}


def labelled(path: str | Path) -> dict[str, object]:
    """Column A label -> column B value, as a person reads the default sheet."""
    sheet = openpyxl.load_workbook(path).active
    return {row[0].value: row[1].value for row in sheet.iter_rows(min_row=4, max_row=20) if row[0].value}


def table(path: str | Path) -> tuple[list[object], list[list[object]]]:
    """The header of the test table and its rows (test, expected, result, signature, comment)."""
    sheet = openpyxl.load_workbook(path).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows(min_col=1, max_col=5)]
    header = next(index for index, row in enumerate(rows) if row[0] == "Test")
    body = [row for row in rows[header + 1:] if any(value is not None for value in row)]
    return rows[header], body


def fill(path: str | Path, results: dict[int, tuple[str | None, str | None]]) -> None:
    """A tester's edits: test number (1-based) -> (Resultat, Signatur), saved as Excel would."""
    workbook = openpyxl.load_workbook(path)
    sheet = workbook.active
    header = next(row[0].row for row in sheet.iter_rows(min_col=1, max_col=1) if row[0].value == "Test")
    for number, (result, signature) in results.items():
        # .value, not cell(row, column, value): that form ignores None (a cleared cell).
        sheet.cell(header + number, 3).value = result
        sheet.cell(header + number, 4).value = signature
    workbook.save(path)


def every_test(result: str = "OK", signature: str = "KN") -> dict[int, tuple[str, str]]:
    return {number: (result, signature) for number in range(1, len(sheets.DEFAULT_TESTS) + 1)}


@pytest.fixture
def written(tmp_path: Path) -> Path:
    result = sheets.write(sheets.ACCEPTANCE, sheets.facts("2.1.0", "prod", [release()]), tmp_path)
    assert result["written"] is True
    return Path(result["path"])


def test_acceptance_sheet_is_filled_from_the_release_and_its_tests_are_empty(written: Path):
    assert written.name == "Akseptansetest-ELLA-2.1.0.xlsx"
    sheet = openpyxl.load_workbook(written).active
    assert sheet["A1"].value == "Akseptansetest i produksjonsmiljø: ELLA"
    cells = labelled(written)
    assert cells["Miljø"] == "prod"
    assert cells["Vert"] == "p22-ella-01"
    assert cells["Ny versjon"] == "2.1.0"
    assert cells["Erstatter versjon"] == "2.0.0"
    assert cells["Type endring"] == "minor"
    assert cells["Hotfix (PATCH-versjon)"] == "Nei"
    assert cells["Databasemigreringer"] == "4f1c2a9e7b30 → 8d3e5b71c0a2"
    assert cells["Release startet"] == "2025-11-24 15:59 UTC"
    assert cells["Nedetid"] == "9.6 s"
    assert cells["Utført av"] == "ola@p22-submit"
    assert cells["Testet av (navn)"] is None
    header, rows = table(written)
    assert header == ["Test", "Forventet resultat", "Resultat", "Signatur", "Kommentar"]
    assert [row[0] for row in rows] == [test for test, _ in sheets.DEFAULT_TESTS]
    assert "ELLA viser versjon 2.1.0" in [row[1] for row in rows]
    assert all(row[2] is None and row[3] is None for row in rows)
    # The cells are reachable by their defined names, for a site's tools as for accept.
    workbook = openpyxl.load_workbook(written)
    assert list(workbook.defined_names["ella_version"].destinations) == [("Akseptansetest", "$B$6")]


def test_a_hotfix_on_staging_gets_a_verification_sheet_that_says_so(tmp_path: Path):
    hotfix = release("2.1.1", "patch", environment="staging", migrations={"pending": False})
    result = sheets.write(sheets.VERIFICATION, sheets.facts("2.1.1", "staging", [release(), hotfix]), tmp_path)
    path = Path(result["path"])
    assert path.name == "Verifisering-ELLA-2.1.1.xlsx"
    assert openpyxl.load_workbook(path).active["A1"].value == "Verifisering av endring i testmiljø: ELLA"
    cells = labelled(path)
    assert (cells["Type endring"], cells["Hotfix (PATCH-versjon)"]) == ("patch (hotfix)", "Ja")
    assert cells["Databasemigreringer"] == "ingen"
    assert cells["Miljø"] == "staging"


def test_no_sheet_for_a_version_never_released():
    with pytest.raises(EllaDeployError, match="no successful release of 3.0.0") as error:
        sheets.facts("3.0.0", "prod", [release(), {**release("3.0.0"), "outcome": "rolled_back"}])
    assert error.value.exit_code == ExitCode.USAGE


def test_hand_edits_survive_a_rewrite_unless_forced(written: Path):
    values = sheets.facts("2.1.0", "prod", [release()])
    assert sheets.write(sheets.ACCEPTANCE, values, written.parent)["written"] is True  # unchanged: rewritten
    fill(written, {1: ("OK", "KN")})
    kept = sheets.write(sheets.ACCEPTANCE, values, written.parent)
    assert kept["written"] is False and "edited by hand" in kept["note"]
    assert table(written)[1][0][2:4] == ["OK", "KN"]
    assert sheets.write(sheets.ACCEPTANCE, values, written.parent, force=True)["written"] is True
    assert table(written)[1][0][2:4] == [None, None]


def test_accept_refuses_a_sheet_with_tests_not_done_and_names_the_rows(written: Path):
    fill(written, {**every_test(), 3: (None, None), 4: ("Feil: filteret tar bort alt", "KN"),
                   5: ("bestått", None)})
    verdict = sheets.read(written)
    assert len(verdict.rows) == len(sheets.DEFAULT_TESTS)
    with pytest.raises(EllaDeployError) as refused:
        sheets.judge_for_accept(verdict, release(), force=False)
    assert refused.value.exit_code == ExitCode.REFUSED
    message = refused.value.message
    assert "\n" not in message
    header_row = next(row.row for row in verdict.rows) - 1
    assert (f"3 of 12 tests not passed; no result: row {header_row + 3} (Åpne en analyse fra oversikten); "
            f"failed: row {header_row + 4} (Bruk et filter (filterkonfigurasjon) på …: "
            "'Feil: filteret tar bort alt'); not signed: row "
            f"{header_row + 5} (Søk etter et gen eller en variant)") in message
    assert message.endswith("accept anyway with --force (audited)")


def test_a_result_cleared_again_counts_as_missing(written: Path):
    fill(written, every_test())
    fill(written, {7: (None, "KN")})
    verdict = sheets.read(written)
    assert [row.test for row in verdict.missing] == [sheets.DEFAULT_TESTS[6][0]]


def test_accept_refuses_an_untouched_sheet_in_one_line(written: Path):
    with pytest.raises(EllaDeployError, match=r"12 of 12 tests not passed; no result: rows \d+, \d+, ") as refused:
        sheets.judge_for_accept(sheets.read(written), release(), force=False)
    assert refused.value.exit_code == ExitCode.REFUSED


def test_a_complete_sheet_is_recorded_with_its_sha256(written: Path):
    # Passing words in any case, with stray spaces, as testers type them.
    results = {number: (word, "Kari N.") for number, word in
               zip(range(1, 13), ["OK", "ok", "Bestått", "GODKJENT", " godkjent "] + ["OK"] * 7, strict=True)}
    fill(written, results)
    record = sheets.judge_for_accept(sheets.read(written), release(), force=False)
    assert record == {"path": str(written.resolve()), "sha256": hashlib.sha256(written.read_bytes()).hexdigest(),
                      "version": "2.1.0", "rows": 12, "passed": 12, "failed": [], "missing": [],
                      "unsigned": [], "forced": False}


def test_force_accepts_an_incomplete_sheet_and_the_record_says_so(written: Path):
    fill(written, {**every_test(), 2: ("Ikke OK", "KN")})
    verdict = sheets.read(written)
    record = sheets.judge_for_accept(verdict, release(), force=True)
    assert record["forced"] is True
    assert (record["passed"], record["failed"]) == (11, [verdict.rows[1].row])


def test_a_sheet_of_another_release_is_refused_even_with_force(written: Path):
    fill(written, every_test())
    with pytest.raises(EllaDeployError, match="sheet of 2.1.0 on prod, the release to accept is 2.2.0") as refused:
        sheets.judge_for_accept(sheets.read(written), release("2.2.0"), force=True)
    assert refused.value.exit_code == ExitCode.REFUSED
    with pytest.raises(EllaDeployError, match="the release to accept is 2.1.0 on staging"):
        sheets.judge_for_accept(sheets.read(written), release(environment="staging"), force=True)


def site_template(path: Path, with_tests: bool) -> Path:
    """A lab's own layout: other cells, a number column before the tests, the signature
    column before the result, and some fields not used at all."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Akseptanse test"
    sheet["A1"] = "OUS - Akseptansetest i produksjonsmiljø (MAL)"
    for cell, label in (("C3", "Versjon:"), ("C4", "Forrige:"), ("F3", "Miljø:"), ("C5", "Hotfix:")):
        sheet[cell] = label
    names = {"ella_version": "D3", "ella_from_version": "D4", "ella_environment": "G3", "ella_hotfix": "D5",
             "ella_tests": "B8", "ella_tests_expected": "C8", "ella_tests_signature": "D8",
             "ella_tests_result": "E8"}
    for name, cell in names.items():
        workbook.defined_names[name] = DefinedName(name, attr_text=f"'Akseptanse test'!${cell[0]}${cell[1:]}")
    for column, header in zip("ABCDE", ("Nr", "Test", "Forventet", "Signatur", "Resultat"), strict=True):
        sheet[f"{column}8"] = header
    if with_tests:
        for row, (test, expected) in enumerate((("Logg inn", "Fungerer"), ("Åpne analyse X", "Åpnes"),
                                                ("Skriv ut rapport", "PDF lages")), start=9):
            sheet[f"A{row}"], sheet[f"B{row}"], sheet[f"C{row}"] = row - 8, test, expected
    workbook.save(path)
    return path


def test_a_site_template_is_filled_by_its_defined_names_and_keeps_its_tests(tmp_path: Path):
    template = site_template(tmp_path / "MAL - Akseptansetest i produksjonsmiljø.xlsx", with_tests=True)
    out = tmp_path / "records"
    result = sheets.write(sheets.ACCEPTANCE, sheets.facts("2.1.0", "prod", [release()]), out, template)
    sheet = openpyxl.load_workbook(result["path"])["Akseptanse test"]
    assert (sheet["D3"].value, sheet["D4"].value, sheet["G3"].value, sheet["D5"].value) == ("2.1.0", "2.0.0",
                                                                                          "prod", "Nei")
    assert sheet["A1"].value == "OUS - Akseptansetest i produksjonsmiljø (MAL)"
    assert [sheet[f"B{row}"].value for row in range(9, 13)] == ["Logg inn", "Åpne analyse X", "Skriv ut rapport", None]
    # The template itself is untouched.
    assert openpyxl.load_workbook(template)["Akseptanse test"]["D3"].value is None

    # Its own column order is read back: result in E, signature in D.
    for row in (9, 10, 11):
        sheet[f"E{row}"], sheet[f"D{row}"] = "OK", "PB"
    sheet["E10"] = "feil"
    sheet.parent.save(result["path"])
    verdict = sheets.read(Path(result["path"]))
    assert [(row.row, row.test, row.result, row.signature) for row in verdict.rows] == [
        (9, "Logg inn", "OK", "PB"), (10, "Åpne analyse X", "feil", "PB"), (11, "Skriv ut rapport", "OK", "PB")]
    with pytest.raises(EllaDeployError, match=r"1 of 3 tests not passed; failed: row 10 \(Åpne analyse X: 'feil'\)"):
        sheets.judge_for_accept(verdict, release(), force=False)


def test_a_site_template_without_tests_gets_the_default_tests_in_its_table(tmp_path: Path):
    template = site_template(tmp_path / "mal.xlsx", with_tests=False)
    result = sheets.write(sheets.ACCEPTANCE, sheets.facts("2.1.0", "prod", [release()]), tmp_path / "out", template)
    sheet = openpyxl.load_workbook(result["path"])["Akseptanse test"]
    assert [sheet[f"B{row}"].value for row in range(9, 9 + len(sheets.DEFAULT_TESTS))] == [
        test for test, _ in sheets.DEFAULT_TESTS]
    assert sheet["C10"].value == "ELLA viser versjon 2.1.0"


def test_a_workbook_without_a_test_table_is_refused_as_input(tmp_path: Path):
    path = tmp_path / "other.xlsx"
    openpyxl.Workbook().save(path)
    with pytest.raises(EllaDeployError, match="no defined name ella_tests") as error:
        sheets.read(path)
    assert error.value.exit_code == ExitCode.USAGE
    (tmp_path / "not.xlsx").write_text("a text file")
    with pytest.raises(EllaDeployError, match="not an .xlsx workbook"):
        sheets.read(tmp_path / "not.xlsx")


def test_stagings_verify_and_the_environments_that_name_them_accept(tmp_path: Path):
    inventories = paths.INVENTORY_DIR
    assert sheets.kind_of(inventories / "staging") is sheets.VERIFICATION
    assert sheets.kind_of(inventories / "sandbox-staging") is sheets.VERIFICATION
    assert sheets.kind_of(inventories / "prod") is sheets.ACCEPTANCE
    assert sheets.kind_of(inventories / "sandbox") is sheets.ACCEPTANCE
    lone = tmp_path / "lab-dev"
    (lone / "group_vars" / "all").mkdir(parents=True)
    (lone / "group_vars" / "all" / "site.yml").write_text("ella_environment: lab-dev\n")
    assert sheets.kind_of(lone) is None


def test_after_a_release_the_sheet_goes_beside_the_change_records_from_the_site_template(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ELLA_DEPLOY_RECORDS_DIR", str(tmp_path / "records"))
    inventory = tmp_path / "lab-prod"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "group_vars" / "all" / "site.yml").write_text(
        "ella_environment: lab-prod\nella_staging_inventory: staging\nella_sheet_template: files/MAL.xlsx\n")
    (inventory / "files").mkdir()
    site_template(inventory / "files" / "MAL.xlsx", with_tests=True)
    written = sheets.write_for(inventory, "2.1.0", audit_records=[release(environment="lab-prod")])
    assert written["path"] == str(tmp_path / "records" / "lab-prod" / "Akseptansetest-ELLA-2.1.0.xlsx")
    assert openpyxl.load_workbook(written["path"])["Akseptanse test"]["G3"].value == "lab-prod"
    (inventory / "files" / "MAL.xlsx").unlink()
    with pytest.raises(EllaDeployError, match="ella_sheet_template"):
        sheets.write_for(inventory, "2.1.0", force=True, audit_records=[release(environment="lab-prod")])


def test_accept_cli_checks_its_sheet_options_before_anything_runs(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["accept", "--force"]) == ExitCode.USAGE
    assert "--force is for a test sheet's tests: give --sheet PATH" in capsys.readouterr().err
    assert cli.main(["accept", "--sheet", "/nonexistent/Akseptansetest-ELLA-2.1.0.xlsx"]) == ExitCode.USAGE
    assert "no test sheet /nonexistent/Akseptansetest-ELLA-2.1.0.xlsx" in capsys.readouterr().err
