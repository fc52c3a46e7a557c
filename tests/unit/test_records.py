"""Change records from audit records: hotfixes get none, staging shows, hand edits are kept."""

from __future__ import annotations

import docx
import pytest

from ella_deploy import records
from ella_deploy.errors import EllaDeployError, ExitCode

T0 = 1_764_000_000.0


def release(version: str, kind: str, finished: float, **extra) -> dict:
    return {"kind": "release", "outcome": "success", "environment": "prod", "to_version": version,
            "from_version": "2.0.0", "change_kind": kind, "started": finished - 30, "finished": finished,
            "operator": "ola", "host": "p22-ella-01", "command": "ella-deploy release 2.1.0 --yes",
            "downtime_seconds": 9.6, "backup": {"path": "/b/prod.dump", "sha256": "ab" * 32},
            "migrations": {"pending": True, "from_revision": "4f1c2a9e7b30", "to_revision": "8d3e5b71c0a2"},
            **extra}


PROD = [release("2.1.0", "minor", T0), {"kind": "accept", "version": "2.1.0", "operator": "kari",
                                        "started": T0 + 3600, "finished": T0 + 3601, "outcome": "success"},
        release("2.1.1", "patch", T0 + 7200)]
STAGING = [release("2.1.0", "minor", T0 - 86400, operator="per", environment="staging")]


def test_record_of_a_minor_release_is_filled_from_both_audit_logs():
    record = records.build("2.1.0", "prod", PROD, "staging", STAGING)
    assert record["staging"]["verified"] is True
    assert record["staging"]["text"] == "staging: 2025-11-23 16:00 UTC av per"
    assert record["acceptance"] == "kari, 2025-11-24 17:00 UTC"
    assert record["migrations"] == "4f1c2a9e7b30 → 8d3e5b71c0a2"
    assert record["downtime"] == "9.6 s"


def test_not_verified_on_staging_is_visible():
    record = records.build("2.1.0", "prod", PROD, "staging", [])
    assert record["staging"] == {"verified": False, "text": "IKKE verifisert i staging"}
    assert "| Verifisering i staging | IKKE verifisert i staging |" in records.markdown(record)
    unreadable = records.build("2.1.0", "prod", PROD, "staging", None)
    assert unreadable["staging"]["text"].startswith("IKKE verifisert")


def test_a_hotfix_gets_no_record_and_unknown_versions_are_refused():
    with pytest.raises(EllaDeployError, match="hotfix") as hotfix:
        records.build("2.1.1", "prod", PROD, "staging", STAGING)
    assert hotfix.value.exit_code == ExitCode.USAGE
    with pytest.raises(EllaDeployError, match="no successful release of 3.0.0"):
        records.build("3.0.0", "prod", PROD, "staging", STAGING)


def test_docx_and_markdown_are_written_and_hand_edits_are_kept(tmp_path):
    record = records.build("2.1.0", "prod", PROD, "staging", STAGING)
    first = records.write(record, tmp_path)
    assert first["docx_written"] is True
    document = docx.Document(first["docx"])
    cells = {row.cells[0].text: row.cells[1].text for row in document.tables[0].rows}
    assert cells["Endring"] == "2.0.0 → 2.1.0 (minor)"
    assert cells["Akseptansetest i produksjon"] == "kari, 2025-11-24 17:00 UTC"
    assert [row.cells[0].text for row in document.tables[1].rows][0] == "Beskrivelse av endringen"

    # Unchanged since written: rewritten. Edited by hand: kept, unless forced.
    assert records.write(record, tmp_path)["docx_written"] is True
    document.tables[1].rows[0].cells[1].text = "Ny variantfiltrering (LA-123)"
    document.save(first["docx"])
    kept = records.write(record, tmp_path)
    assert kept["docx_written"] is False and "edited by hand" in kept["note"]
    assert docx.Document(first["docx"]).tables[1].rows[0].cells[1].text == "Ny variantfiltrering (LA-123)"
    assert records.write(record, tmp_path, force=True)["docx_written"] is True


def test_after_a_release_its_change_record_reads_no_audit_log_again(tmp_path, monkeypatch):
    """The record right after a release is built from the release's own record and staging's
    log as the pre-flight read it; a hotfix's reads nothing. Each audit-log read is a playbook
    run (seconds): here the runner answers with staging's log and counts the reads."""
    import base64
    import json
    from types import SimpleNamespace

    from ella_deploy import cli, history, paths, release as release_module

    reads = []

    def read_log(playbook, inventory, **_):
        assert playbook == "history.yml"
        reads.append(inventory.name)
        log = "\n".join(json.dumps(r) for r in STAGING)
        return SimpleNamespace(ok=True, published={"ella_audit_log": base64.b64encode(log.encode()).decode()})

    monkeypatch.setattr(history, "run_playbook", read_log)
    monkeypatch.setattr(history, "_READ", {})
    monkeypatch.setenv("ELLA_DEPLOY_RECORDS_DIR", str(tmp_path))
    inventory = paths.resolve_inventory("sandbox")

    verified, error = release_module.staging_verified(inventory, skip=False)
    assert (verified, error, reads) == (("2.1.0",), "", ["sandbox-staging"])

    written = cli._change_record(inventory, "2.1.0", None, audit_records=[PROD[0]])
    assert reads == ["sandbox-staging"]
    document = docx.Document(written["docx"])
    cells = {row.cells[0].text: row.cells[1].text for row in document.tables[0].rows}
    assert cells["Verifisering i staging"] == "sandbox-staging: 2025-11-23 16:00 UTC av per"
    assert cells["Akseptansetest i produksjon"] == "ikke registrert ennå (ella-deploy accept)"

    assert cli._change_record(inventory, "2.1.1", None, audit_records=[PROD[2]]) is None
    assert reads == ["sandbox-staging"]
    assert sorted(p.name for p in (tmp_path / "prod").iterdir()) == [
        "Endringskontroll-ELLA-2.1.0.docx", "Endringskontroll-ELLA-2.1.0.json", "Endringskontroll-ELLA-2.1.0.md"]

    # Read again by a later command (`records`, `accept`): the environment's own log is read.
    history.fetch(inventory)
    assert reads == ["sandbox-staging", "sandbox"]
