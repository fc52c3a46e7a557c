"""Change records ("Endringskontroll for endringer av ELLA") of non-hotfix releases.

A PATCH bump is a hotfix: logged in the audit record, no change record. For every other
release the tool writes a .docx (python-docx) and a Markdown copy, pre-filled from the
audit logs: versions, dates, who deployed, migrations, the staging verification (the last
successful release of that version on the environment's staging, or a visible "not
verified"), the acceptance test (who ran `accept`, when) and the backup. The operators
complete the rest by hand, so a .docx edited since it was written is never overwritten
without --force (a sidecar .json keeps the sha256 of what was written).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ella_deploy.errors import EllaDeployError, ExitCode

NEEDS_RECORD = ("major", "minor", "initial")
TO_FILL_IN = [
    ("Beskrivelse av endringen", ""),
    ("Begrunnelse / sak (Jira, GitLab)", ""),
    ("Risikovurdering og konsekvens for brukerne", ""),
    ("Godkjent av systemansvarlig (navn, dato)", ""),
    ("Verifisering i testmiljø godkjent av superbruker (navn, dato)", ""),
]


def records_dir(environment: str) -> Path:
    base = os.environ.get("ELLA_DEPLOY_RECORDS_DIR") or str(Path.home() / "ella-change-records")
    return Path(base) / environment


def when(value: Any) -> str:
    """A timestamp of the audit log as the records show it (UTC)."""
    if value in (None, ""):
        return "-"
    return datetime.datetime.fromtimestamp(float(value), datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def releases(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "release" and r.get("outcome") == "success"]


def build(version: str, environment: str, records: list[dict[str, Any]],
          staging_name: str | None, staging_records: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The facts of the change record of `version`, from the audit logs."""
    done = [r for r in releases(records) if r.get("to_version") == version]
    if not done:
        raise EllaDeployError(f"records: no successful release of {version} in {environment}'s audit log",
                              ExitCode.USAGE)
    release = done[-1]
    kind = release.get("change_kind")
    if kind not in NEEDS_RECORD:
        raise EllaDeployError(f"records: {version} was a {kind} release (a hotfix): no change record, "
                              "it is logged in the audit log", ExitCode.USAGE)
    finished = float(release.get("finished") or 0)
    accepted = [r for r in records if r.get("kind") == "accept" and r.get("version") == version
                and float(r.get("started") or r.get("finished") or finished) >= finished]
    if staging_records is None:
        staging = {"verified": False, "text": f"IKKE verifisert: {staging_name or 'staging'} kunne ikke leses"}
    else:
        verified = [r for r in releases(staging_records) if r.get("to_version") == version
                    and float(r.get("finished") or 0) <= finished]
        staging = ({"verified": True, "when": when(verified[-1].get("finished")),
                    "operator": verified[-1].get("operator"),
                    "text": f"{staging_name}: {when(verified[-1].get('finished'))} av {verified[-1].get('operator')}"}
                   if verified else {"verified": False, "text": f"IKKE verifisert i {staging_name or 'staging'}"
                                     + (" (--skip-staging-check)" if (release.get("staging_check") or {}).get(
                                         "skipped") else "")})
    migrations = release.get("migrations") or {}
    backup = release.get("backup") or {}
    return {
        "version": version,
        "environment": environment,
        "from_version": release.get("from_version") or "ingen",
        "change_kind": kind,
        "started": when(release.get("started")),
        "finished": when(release.get("finished")),
        "operator": release.get("operator"),
        "host": release.get("host"),
        "command": release.get("command"),
        "downtime": f"{float(release['downtime_seconds']):.1f} s" if release.get("downtime_seconds") else "-",
        "migrations": (f"{migrations.get('from_revision')} → {migrations.get('to_revision')}"
                       if migrations.get("pending") else "ingen (databasen var allerede på nyeste revisjon)"),
        "staging": staging,
        "acceptance": (f"{accepted[-1].get('operator')}, {when(accepted[-1].get('finished'))}" if accepted
                       else "ikke registrert ennå (ella-deploy accept)"),
        "backup": (f"{backup.get('path')} (sha256 {backup.get('sha256')})" if backup else "-"),
    }


def rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Applikasjon", "ELLA"),
        ("Miljø", record["environment"]),
        ("Endring", f"{record['from_version']} → {record['version']} ({record['change_kind']})"),
        ("Startet", record["started"]),
        ("Ferdig", record["finished"]),
        ("Utført av", f"{record['operator']} på {record['host']}"),
        ("Kommando", str(record["command"])),
        ("Nedetid", record["downtime"]),
        ("Databasemigreringer", record["migrations"]),
        ("Verifisering i staging", record["staging"]["text"]),
        ("Akseptansetest i produksjon", record["acceptance"]),
        ("Sikkerhetskopi før endringen", record["backup"]),
    ]


def markdown(record: dict[str, Any]) -> str:
    lines = [f"# Endringskontroll for endringer av ELLA: {record['version']}", "",
             "Fylt ut av ella-deploy fra revisjonsloggen. Feltene under «Fylles ut manuelt» fylles ut for hånd.", "",
             "| Felt | Verdi |", "|---|---|"]
    lines += [f"| {name} | {value.replace('|', '/')} |" for name, value in rows(record)]
    lines += ["", "## Fylles ut manuelt", ""] + [f"- **{name}:** " for name, _ in TO_FILL_IN]
    return "\n".join(lines) + "\n"


def _docx(record: dict[str, Any], path: Path) -> None:
    import docx  # python-docx; imported here so other commands do not pay for it

    document = docx.Document()
    document.core_properties.title = f"Endringskontroll ELLA {record['version']}"
    document.add_heading(f"Endringskontroll for endringer av ELLA: {record['version']}", level=1)
    document.add_paragraph("Fylt ut av ella-deploy fra revisjonsloggen. Feltene under «Fylles ut manuelt» "
                           "fylles ut for hånd.")
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for name, value in rows(record):
        cells = table.add_row().cells
        cells[0].text, cells[1].text = name, value
    document.add_heading("Fylles ut manuelt", level=2)
    manual = document.add_table(rows=0, cols=2)
    manual.style = "Table Grid"
    for name, value in TO_FILL_IN:
        cells = manual.add_row().cells
        cells[0].text, cells[1].text = name, value
    document.save(str(path))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edited_by_hand(path: Path, sidecar: Path, key: str) -> bool:
    """Whether `path` differs from what ella-deploy last wrote there (its sha256 under `key`
    in the sidecar .json); a file with no sidecar was not written by ella-deploy."""
    written_before = json.loads(sidecar.read_text()).get(key) if sidecar.exists() else None
    return path.exists() and _sha256(path) != written_before


def write(record: dict[str, Any], directory: Path, force: bool = False) -> dict[str, Any]:
    """Write the .docx and .md; a .docx changed by hand since it was written is kept unless
    `force`. Returns the paths and whether the .docx was (re)written."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"Endringskontroll-ELLA-{record['version']}"
    # Not with_suffix: "2.1.0" has a suffix of its own (".0").
    docx_path, md_path, sidecar = (Path(f"{stem}{suffix}") for suffix in (".docx", ".md", ".json"))
    edited = edited_by_hand(docx_path, sidecar, "docx_sha256")
    md_path.write_text(markdown(record), encoding="utf-8")
    if edited and not force:
        return {"docx": str(docx_path), "markdown": str(md_path), "docx_written": False,
                "note": "the .docx was edited by hand: kept (--force overwrites it)"}
    _docx(record, docx_path)
    sidecar.write_text(json.dumps({"docx_sha256": _sha256(docx_path), "record": record}, indent=2, sort_keys=True))
    return {"docx": str(docx_path), "markdown": str(md_path), "docx_written": True, "note": ""}


def collect(inventory: Path, version: str, progress: Any = None,
            records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The record of `version` from the environment's audit log (or `records`: right after the
    release, its own record is all of the log the change record reads, as nothing accepted it
    yet) and its staging's (as the release's pre-flight read it, when this process did)."""
    from ella_deploy import history, paths

    if records is None:
        records = history.fetch(inventory)
    environment = next((str(r["environment"]) for r in reversed(records) if r.get("environment")), inventory.name)
    staging_name = paths.inventory_setting(inventory, "ella_staging_inventory")
    staging_records = None
    if staging_name:
        try:
            staging_records = history.fetch(paths.resolve_inventory(str(staging_name)), reuse=True)
        except EllaDeployError:
            staging_records = None
    return build(version, environment, records, str(staging_name) if staging_name else None, staging_records)


def listing(inventory: Path) -> list[dict[str, Any]]:
    from ella_deploy import history

    records = history.fetch(inventory)
    out = []
    for release in releases(records):
        environment = str(release.get("environment") or inventory.name)
        stem = records_dir(environment) / f"Endringskontroll-ELLA-{release.get('to_version')}"
        needs = release.get("change_kind") in NEEDS_RECORD
        out.append({"version": release.get("to_version"), "from_version": release.get("from_version"),
                    "change_kind": release.get("change_kind"), "finished": when(release.get("finished")),
                    "record": f"{stem}.docx" if needs else None,
                    "written": needs and Path(f"{stem}.docx").exists()})
    return out
