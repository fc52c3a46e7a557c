"""The test sheets of a release, as .xlsx (openpyxl): the procedure's "MAL - Verifisering av
endring i testmiljø" (written after a successful release on a staging environment) and
"MAL - Akseptansetest i produksjonsmiljø" (after one on a production-like environment).

A sheet is pre-filled from the audit log (environment, host, the version and the one it
replaces, the change kind, migrations, start, downtime, operator) and carries a table of
tests (Test, Forventet resultat, Resultat, Signatur) for the testers to fill in. `accept
--sheet` reads it back: every test needs a passing result (PASSED_WORDS) and a signature,
or the release is not declared accepted (unless --force, which the audit record says).

Cells are found by the workbook's defined names (FIELDS, TABLE_NAMES), in the default
workbook as in a site's own template (`ella_sheet_template` in the inventory), so one path
fills and reads both. A sheet edited since ella-deploy wrote it is never overwritten without
`force` (a sidecar .json keeps the sha256 of what was written, as for the change records).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ella_deploy import records
from ella_deploy.errors import EllaDeployError, ExitCode


@dataclass(frozen=True)
class SheetKind:
    key: str
    title: str
    # The file is <stem>-ELLA-<version>.xlsx, beside the change records.
    stem: str


VERIFICATION = SheetKind("verification", "Verifisering av endring i testmiljø", "Verifisering")
ACCEPTANCE = SheetKind("acceptance", "Akseptansetest i produksjonsmiljø", "Akseptansetest")

# Defined names of the pre-filled cells and their labels in the default sheet. A site's
# template may define any of them (the rest are skipped); ella_version is required to
# accept with a sheet.
FIELDS: tuple[tuple[str, str], ...] = (
    ("ella_environment", "Miljø"),
    ("ella_host", "Vert"),
    ("ella_version", "Ny versjon"),
    ("ella_from_version", "Erstatter versjon"),
    ("ella_change_kind", "Type endring"),
    ("ella_hotfix", "Hotfix (PATCH-versjon)"),
    ("ella_migrations", "Databasemigreringer"),
    ("ella_started", "Release startet"),
    ("ella_finished", "Release ferdig"),
    ("ella_downtime", "Nedetid"),
    ("ella_operator", "Utført av"),
)
# Filled in by hand in the default sheet (not read by ella-deploy).
BY_HAND = ("Testet av (navn)", "Dato", "Konklusjon / avvik")

# The test table: `ella_tests` names its header cell "Test"; the other columns are found by
# their own names, else they are the next columns to its right in this order. Test rows
# follow the header down to the first row without a test.
TABLE_NAMES = ("ella_tests", "ella_tests_expected", "ella_tests_result", "ella_tests_signature")
HEADERS = ("Test", "Forventet resultat", "Resultat", "Signatur", "Kommentar")

# A result that passes, compared case-insensitively with the cell's text; anything else
# written in the cell is a failed test.
PASSED_WORDS = frozenset({"ok", "bestått", "godkjent", "passed", "pass"})

# The default tests ({version}: the released version), what ELLA's users do every day.
DEFAULT_TESTS: tuple[tuple[str, str], ...] = (
    ("Logg inn med egen bruker", "Innloggingen lykkes; oversikten vises uten feilmeldinger"),
    ("Kontroller at ELLA viser riktig versjon", "ELLA viser versjon {version}"),
    ("Åpne en analyse fra oversikten", "Analysen åpnes; varianter, annotasjon og tidligere tolkninger vises"),
    ("Bruk et filter (filterkonfigurasjon) på analysen",
     "Variantlisten filtreres som forventet; de filtrerte variantene kan vises"),
    ("Søk etter et gen eller en variant", "Søket gir de forventede treffene"),
    ("Klassifiser en variant (ACMG-kriterier og klasse) i en testanalyse",
     "Klassifiseringen lagres og vises etter at siden er lastet på nytt"),
    ("Legg til en referanse og en kommentar på en variant", "Referansen og kommentaren lagres og vises"),
    ("Skriv rapporttekst og vis rapporten for analysen", "Rapporten viser de klassifiserte variantene og teksten"),
    ("Send testanalysen til gjennomgang (Review) og åpne den igjen",
     "Statusen endres og vises riktig i oversikten"),
    ("Åpne IGV for en variant", "IGV viser sporene (BAM/VCF) for analysen"),
    ("Test endringene i denne versjonen (se endringsbeskrivelsen)", "Som beskrevet i endringsbeskrivelsen"),
    ("Ingen feilmeldinger (røde varsler) under testen", "Ingen feilmeldinger vist"),
)

CHANGE_KINDS = {"major": "major (ny hovedversjon)", "minor": "minor", "patch": "patch (hotfix)",
                "initial": "første installasjon", "downgrade": "nedgradering"}


# ---- which sheet an environment gets -----------------------------------------------------


def _names_as_staging(other: Path, inventory: Path) -> bool:
    from ella_deploy import paths

    named = paths.inventory_setting(other, "ella_staging_inventory")
    if not named:
        return False
    try:
        return paths.resolve_inventory(str(named)).resolve() == inventory.resolve()
    except EllaDeployError:
        return False


def kind_of(inventory: Path) -> SheetKind | None:
    """Verification for a staging (an inventory another one names as its
    `ella_staging_inventory`: its releases are the tests of a later one), acceptance for an
    environment that names a staging, none for any other."""
    from ella_deploy import paths

    others = [paths.INVENTORY_DIR / name for name in paths.known_inventories()]
    if any(_names_as_staging(other, inventory) for other in others if other.resolve() != inventory.resolve()):
        return VERIFICATION
    if paths.inventory_setting(inventory, "ella_staging_inventory"):
        return ACCEPTANCE
    return None


def template_of(inventory: Path) -> Path | None:
    """The site's own template (`ella_sheet_template`, relative to the inventory), if any."""
    from ella_deploy import paths

    setting = paths.inventory_setting(inventory, "ella_sheet_template")
    if not setting:
        return None
    path = Path(str(setting)).expanduser()
    path = path if path.is_absolute() else inventory / path
    if not path.is_file():
        raise EllaDeployError(f"sheet template {path} (ella_sheet_template) does not exist", ExitCode.USAGE)
    return path


# ---- what a sheet is filled with -----------------------------------------------------------


def facts(version: str, environment: str, audit_records: list[dict[str, Any]]) -> dict[str, str]:
    """Defined name -> value, from the last successful release of `version` in the audit log."""
    done = [r for r in records.releases(audit_records) if r.get("to_version") == version]
    if not done:
        raise EllaDeployError(f"sheets: no successful release of {version} in {environment}'s audit log",
                              ExitCode.USAGE)
    release = done[-1]
    kind = str(release.get("change_kind") or "-")
    migrations = release.get("migrations") or {}
    if migrations.get("pending"):
        migrated = f"{migrations.get('from_revision')} → {migrations.get('to_revision')}"
    else:
        migrated = "ingen" if migrations else "-"
    downtime = release.get("downtime_seconds")
    return {
        "ella_environment": str(release.get("environment") or environment),
        "ella_host": str(release.get("host") or "-"),
        "ella_version": version,
        "ella_from_version": str(release.get("from_version") or "ingen"),
        "ella_change_kind": CHANGE_KINDS.get(kind, kind),
        "ella_hotfix": "Ja" if kind == "patch" else "Nei",
        "ella_migrations": migrated,
        "ella_started": records.when(release.get("started")),
        "ella_finished": records.when(release.get("finished")),
        "ella_downtime": f"{float(downtime):.1f} s" if downtime not in (None, "") else "-",
        "ella_operator": str(release.get("operator") or "-"),
    }


# ---- cells by defined name -----------------------------------------------------------------


def _named_cell(workbook: Any, name: str) -> Any | None:
    """The (first) cell a defined name points at, workbook- or sheet-scoped; None if undefined."""
    defined = workbook.defined_names.get(name)
    if defined is None:
        for sheet in workbook.worksheets:
            if name in sheet.defined_names:
                defined = sheet.defined_names[name]
                break
    if defined is None:
        return None
    for sheet_title, reference in defined.destinations:
        if sheet_title in workbook.sheetnames:
            return workbook[sheet_title][reference.replace("$", "").split(":")[0]]
    return None


def _define(workbook: Any, name: str, cell: Any) -> None:
    from openpyxl.utils import absolute_coordinate, quote_sheetname
    from openpyxl.workbook.defined_name import DefinedName

    reference = f"{quote_sheetname(cell.parent.title)}!{absolute_coordinate(cell.coordinate)}"
    workbook.defined_names[name] = DefinedName(name, attr_text=reference)


@dataclass(frozen=True)
class _Table:
    sheet: Any
    header_row: int
    # Column numbers of test, expected, result, signature.
    columns: tuple[int, int, int, int]

    def rows(self) -> list[int]:
        found, row = [], self.header_row + 1
        while _text(self.sheet.cell(row, self.columns[0]).value):
            found.append(row)
            row += 1
        return found


def _table(workbook: Any) -> _Table:
    start = _named_cell(workbook, "ella_tests")
    if start is None:
        raise EllaDeployError("the sheet has no test table: no defined name ella_tests (its header cell 'Test')",
                              ExitCode.USAGE)
    columns = [start.column]
    for offset, name in enumerate(TABLE_NAMES[1:], start=1):
        cell = _named_cell(workbook, name)
        if cell is not None and cell.parent is not start.parent:
            raise EllaDeployError(f"{name} is not on the sheet of ella_tests", ExitCode.USAGE)
        columns.append(cell.column if cell is not None else start.column + offset)
    return _Table(start.parent, start.row, (columns[0], columns[1], columns[2], columns[3]))


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


# ---- writing -------------------------------------------------------------------------------


def _default_workbook(kind: SheetKind) -> Any:
    """The sheet as the lab's template lays it out: title, the facts, lines to fill in by
    hand, and the test table, every cell ella-deploy fills or reads under its defined name."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.worksheet.datavalidation import DataValidation

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = kind.stem
    thin = Side(style="thin", color="808080")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    label_fill = PatternFill("solid", fgColor="DDE7F0")
    sheet["A1"] = f"{kind.title}: ELLA"
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A2"] = ("Fylt ut av ella-deploy fra revisjonsloggen. Fyll ut Resultat (OK, Bestått eller Godkjent; "
                   "ellers hva som feilet) og Signatur for hver test.")
    sheet["A2"].alignment = Alignment(wrap_text=False)
    row = 4
    for name, label in FIELDS:
        sheet.cell(row, 1, label).font = Font(bold=True)
        sheet.cell(row, 1).fill = label_fill
        _define(workbook, name, sheet.cell(row, 2))
        for column in (1, 2):
            sheet.cell(row, column).border = box
        row += 1
    row += 1
    for label in BY_HAND:
        sheet.cell(row, 1, label).font = Font(bold=True)
        sheet.cell(row, 1).fill = label_fill
        for column in (1, 2):
            sheet.cell(row, column).border = box
        row += 1
    row += 1
    for column, header in enumerate(HEADERS, start=1):
        cell = sheet.cell(row, column, header)
        cell.font = Font(bold=True)
        cell.fill = label_fill
        cell.border = box
    for name, column in zip(TABLE_NAMES, range(1, 5), strict=True):
        _define(workbook, name, sheet.cell(row, column))
    # A choice list for Resultat that still takes any text (what failed).
    choices = DataValidation(type="list", formula1='"OK,Ikke OK"', allow_blank=True, showErrorMessage=False)
    choices.add(f"C{row + 1}:C{row + 200}")
    sheet.add_data_validation(choices)
    for column, width in zip("ABCDE", (58, 58, 14, 18, 40), strict=True):
        sheet.column_dimensions[column].width = width
    return workbook


def _fill(workbook: Any, values: dict[str, str], version: str, default_table: bool) -> None:
    from openpyxl.styles import Alignment, Border, Side

    for name, value in values.items():
        cell = _named_cell(workbook, name)
        if cell is not None:
            cell.value = value
    table = _table(workbook)
    if table.rows():
        return  # the template's own tests
    thin = Side(style="thin", color="808080")
    for index, (test, expected) in enumerate(DEFAULT_TESTS, start=1):
        row = table.header_row + index
        table.sheet.cell(row, table.columns[0], test)
        table.sheet.cell(row, table.columns[1], expected.format(version=version))
        if default_table:
            for column in range(1, len(HEADERS) + 1):
                cell = table.sheet.cell(row, column)
                cell.border = Border(left=thin, right=thin, top=thin, bottom=thin)
                cell.alignment = Alignment(wrap_text=True, vertical="top")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def path_of(kind: SheetKind, version: str, directory: Path) -> Path:
    return directory / f"{kind.stem}-ELLA-{version}.xlsx"


def write(kind: SheetKind, values: dict[str, str], directory: Path, template: Path | None = None,
          force: bool = False) -> dict[str, Any]:
    """Write the sheet of `values["ella_version"]` into `directory` (from `template` if
    given); a sheet changed since it was written is kept unless `force`."""
    from openpyxl import load_workbook

    version = values["ella_version"]
    directory.mkdir(parents=True, exist_ok=True)
    path = path_of(kind, version, directory)
    # Not with_suffix: "2.1.0" has a suffix of its own (".0").
    sidecar = Path(f"{path}.json")
    if records.edited_by_hand(path, sidecar, "xlsx_sha256") and not force:
        return {"kind": kind.key, "path": str(path), "written": False,
                "note": "edited by hand (or not written by ella-deploy): kept (--force overwrites it)"}
    workbook = load_workbook(template) if template else _default_workbook(kind)
    _fill(workbook, values, version, default_table=template is None)
    workbook.save(path)
    sidecar.write_text(json.dumps({"xlsx_sha256": _sha256(path), "kind": kind.key,
                                   "template": str(template) if template else None, "values": values},
                                  indent=2, sort_keys=True))
    return {"kind": kind.key, "path": str(path), "written": True, "note": ""}


def write_for(inventory: Path, version: str, force: bool = False,
              audit_records: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The sheet the environment gets after a successful release of `version` (None: neither a
    staging nor production-like), beside its change records. `audit_records`: the release's
    own record when the caller has it, else the environment's audit log is read."""
    kind = kind_of(inventory)
    if kind is None:
        return None
    if audit_records is None:
        from ella_deploy import history

        audit_records = history.fetch(inventory)
    values = facts(version, inventory.name, audit_records)
    return write(kind, values, records.records_dir(values["ella_environment"]), template_of(inventory), force)


# ---- reading: accept --sheet ---------------------------------------------------------------


@dataclass(frozen=True)
class SheetRow:
    # The row number as the spreadsheet shows it.
    row: int
    test: str
    expected: str
    result: str
    signature: str

    @property
    def passed(self) -> bool:
        return self.result.casefold() in PASSED_WORDS

    def label(self) -> str:
        test = self.test if len(self.test) <= 40 else self.test[:40] + "…"
        return f"{self.row} ({test}" + (f": {self.result!r})" if self.result and not self.passed else ")")


def _rows_text(rows: list[SheetRow]) -> str:
    """Rows with their tests when few, else their numbers alone (the message stays one line)."""
    if len(rows) <= 3:
        return ("row " if len(rows) == 1 else "rows ") + ", ".join(row.label() for row in rows)
    return "rows " + ", ".join(str(row.row) for row in rows)


@dataclass(frozen=True)
class SheetVerdict:
    path: str
    sha256: str
    version: str
    environment: str
    rows: tuple[SheetRow, ...] = field(default_factory=tuple)

    @property
    def missing(self) -> list[SheetRow]:
        return [row for row in self.rows if not row.result]

    @property
    def failed(self) -> list[SheetRow]:
        return [row for row in self.rows if row.result and not row.passed]

    @property
    def unsigned(self) -> list[SheetRow]:
        return [row for row in self.rows if row.passed and not row.signature]

    @property
    def passed(self) -> list[SheetRow]:
        return [row for row in self.rows if row.passed and row.signature]

    @property
    def complete(self) -> bool:
        return bool(self.rows) and len(self.passed) == len(self.rows)

    def problems(self) -> str:
        """One line naming the rows that are not passed."""
        if not self.rows:
            return "the sheet has no test rows"
        parts = [f"{what}: {_rows_text(rows)}" for what, rows in
                 (("no result", self.missing), ("failed", self.failed), ("not signed", self.unsigned)) if rows]
        return f"{len(self.rows) - len(self.passed)} of {len(self.rows)} tests not passed; " + "; ".join(parts)

    def as_record(self, forced: bool) -> dict[str, Any]:
        """What the audit record keeps of the sheet (`test_sheet`)."""
        return {"path": self.path, "sha256": self.sha256, "version": self.version, "rows": len(self.rows),
                "passed": len(self.passed), "failed": [row.row for row in self.failed],
                "missing": [row.row for row in self.missing],
                "unsigned": [row.row for row in self.unsigned], "forced": forced}


def read(path: Path) -> SheetVerdict:
    """The tests of a filled-in sheet and what they say."""
    from openpyxl import load_workbook

    if not path.is_file():
        raise EllaDeployError(f"no test sheet {path}", ExitCode.USAGE)
    digest = _sha256(path)
    try:
        # Values as last saved (a formula's cached result), never formulas.
        workbook = load_workbook(path, data_only=True)
    except Exception as error:  # noqa: BLE001 - openpyxl raises many kinds for a file that is no workbook
        raise EllaDeployError(f"{path} is not an .xlsx workbook openpyxl can read: {error}", ExitCode.USAGE) from None
    table = _table(workbook)
    rows = tuple(SheetRow(row, *(_text(table.sheet.cell(row, column).value) for column in table.columns))
                 for row in table.rows())
    version_cell, environment_cell = _named_cell(workbook, "ella_version"), _named_cell(workbook, "ella_environment")
    return SheetVerdict(str(path.resolve()), digest, _text(version_cell.value) if version_cell else "",
                        _text(environment_cell.value) if environment_cell else "", rows)


def judge_for_accept(verdict: SheetVerdict, release: dict[str, Any] | None, force: bool) -> dict[str, Any]:
    """The sheet's part of the audit record of `accept`, or a refusal (exit 75): a sheet of
    another release is refused always, tests without a passing, signed result unless `force`.
    `release`: the last successful release, the one `accept` declares accepted."""
    name = Path(verdict.path).name
    if release is None:
        raise EllaDeployError("accept: no successful release on record to accept", ExitCode.REFUSED)
    version, environment = str(release.get("to_version")), str(release.get("environment") or "")
    if not verdict.version:
        raise EllaDeployError(f"accept refused: {name} names no version (defined name ella_version)",
                              ExitCode.REFUSED)
    if verdict.version != version or (verdict.environment and environment and verdict.environment != environment):
        raise EllaDeployError(f"accept refused: {name} is the sheet of {verdict.version} on "
                              f"{verdict.environment or '?'}, the release to accept is {version} on {environment}",
                              ExitCode.REFUSED)
    if not verdict.complete and not force:
        raise EllaDeployError(f"accept refused: {name}: {verdict.problems()}: fill them in, or accept anyway "
                              "with --force (audited)", ExitCode.REFUSED)
    return verdict.as_record(forced=not verdict.complete)


def check_for_accept(inventory: Path, path: Path, force: bool) -> dict[str, Any]:
    """Read the sheet and judge it against the release `accept` would accept (the last
    successful one in the audit log, as the accept playbook finds it)."""
    from ella_deploy import history

    verdict = read(path)
    done = records.releases(history.fetch(inventory))
    return judge_for_accept(verdict, done[-1] if done else None, force)
