"""Notices at the right step, the TSD report and the change record, against the sandbox."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import docx

from tests.conftest import free_port, run_cli
from tests.sandbox.conftest import HEAD_1_16_5, alembic_head


def message(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


def record_cells(path: str) -> dict[str, str]:
    return {row.cells[0].text: row.cells[1].text for row in docx.Document(path).tables[0].rows}


def test_notices_at_their_step_never_fail_a_release_and_the_change_record_follows(prod, smtp, tmp_path):
    inbox, env = smtp
    records_dir = {"ELLA_DEPLOY_RECORDS_DIR": str(tmp_path)}
    run_cli("sandbox", "reset", "sandbox-staging", check=True)  # no staging release on record
    # The SMTP server is not there when the release sends: the release succeeds, the notice is recorded unsent.
    released = run_cli("--inventory", "sandbox", "--output", "json", "release", "1.17.0", "--yes",
                       "--skip-staging-check", "--notify",
                       env={"ELLA_SANDBOX_SMTP_PORT": str(free_port()), **records_dir})
    assert released.returncode == 0, released.stderr
    summary = json.loads(released.stdout)
    assert summary["outcome"] == "success"
    notice = summary["record"]["notice"]
    assert notice["sent"] is False and "not sent via 127.0.0.1" in notice["error"]
    assert prod.audit_records()[-1]["notice"] == notice

    docx_path = summary["change_record"]["docx"]
    assert Path(docx_path) == tmp_path / "sandbox" / "Endringskontroll-ELLA-1.17.0.docx"
    cells = record_cells(docx_path)
    assert cells["Endring"] == "1.16.5 → 1.17.0 (minor)"
    assert cells["Verifisering i staging"] == "IKKE verifisert i sandbox-staging (--skip-staging-check)"
    assert cells["Akseptansetest i produksjon"].startswith("ikke registrert")
    assert cells["Databasemigreringer"] == f"{HEAD_1_16_5} → {alembic_head('1.17.0')}"

    # The testers' notice by hand, then the acceptance tells the users.
    resent = run_cli("--inventory", "sandbox", "notify", "acceptance", "--version", "1.17.0", "--send", env=env)
    assert resent.returncode == 0, resent.stderr
    accepted = run_cli("--inventory", "sandbox", "accept", "--notify", env={**env, **records_dir})
    assert accepted.returncode == 0, accepted.stderr
    acceptance, done = (message(e) for e in inbox.envelopes)
    assert inbox.envelopes[0].rcpt_tos == ["superbruker@sandbox.invalid", "ella-support@sandbox.invalid"]
    assert acceptance["Subject"] == "ELLA 1.17.0: akseptansetesten kan starte"
    assert done["Subject"] == "ELLA 1.17.0 er i drift – vennligst bruk ELLA som normalt"
    assert "EGG@sandbox.invalid" in done["To"] and done["Reply-To"] == "ella-support@sandbox.invalid"
    assert prod.audit_records()[-1]["notice"]["sent"] is True
    # The record was not edited by hand, so the acceptance is filled in now.
    operator = prod.audit_records()[-1]["operator"]
    assert record_cells(docx_path)["Akseptansetest i produksjon"].startswith(operator + ", ")
    listed = run_cli("--inventory", "sandbox", "records", env=records_dir)
    assert "1.16.5 -> 1.17.0 (minor)" in listed.stdout and docx_path in listed.stdout
    assert run_cli("--inventory", "sandbox", "records", "1.16.5", env=records_dir).returncode == 64


def test_report_tsd_attaches_check_and_status(fresh, smtp):
    inbox, env = smtp
    shown = run_cli("--inventory", "sandbox", "report-tsd", "p22-ella-01 svarer tregt på ssh", env=env)
    assert shown.returncode == 0 and inbox.envelopes == []
    sent = run_cli("--inventory", "sandbox", "report-tsd", "p22-ella-01 svarer tregt på ssh", "--send", env=env)
    assert sent.returncode == 0, sent.stderr
    [envelope] = inbox.envelopes
    report = message(envelope)
    assert report["To"] == "tsd-drift@sandbox.invalid"
    assert report["Cc"] == "diag-bioinf@sandbox.invalid, ella-support@sandbox.invalid"
    assert report["Subject"] == "p22 / ELLA (sandbox): p22-ella-01 svarer tregt på ssh"
    attachments = {part.get_filename(): part.get_content() for part in report.iter_attachments()}
    assert attachments["ella-check.txt"].startswith("ELLA sandbox check at ")
    assert "sandbox: ONE ACTIVE on p22-ella-01" in attachments["ella-status.txt"]
