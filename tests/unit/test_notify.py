"""Notices by e-mail, delivered to a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import socket

import pytest

from tests.conftest import run_cli

USERS = ["EGG", "EKG", "EHD", "SAK", "ELL", "asglan", "lretters", "uxatjr", "yngsej"]


def message_of(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


def test_release_notice_printed_without_send_is_not_sent(smtp):
    inbox, env = smtp
    shown = run_cli("notify", "release", "--at", "fredag 28. november kl. 16–18", "--version", "2.1.0", env=env)
    assert shown.returncode == 0, shown.stderr
    assert inbox.envelopes == []
    printed = email.message_from_string(shown.stdout, policy=email.policy.default)
    assert printed["Subject"] == "ELLA: ny versjon 2.1.0 settes i drift fredag 28. november kl. 16–18"
    assert "Vennligst lagre arbeidet ditt" in printed.get_content()


def test_acceptance_notice_goes_to_testers_with_support_in_cc_and_reply_to(smtp):
    inbox, env = smtp
    sent = run_cli("notify", "acceptance", "--version", "2.1.0", "--send", env=env)
    assert sent.returncode == 0, sent.stderr
    [envelope] = inbox.envelopes
    assert sorted(envelope.rcpt_tos) == ["ella-support@sandbox.invalid", "superbruker@sandbox.invalid"]
    message = message_of(envelope)
    assert message["To"] == "superbruker@sandbox.invalid"
    assert message["Cc"] == message["Reply-To"] == "ella-support@sandbox.invalid"
    assert message["Subject"] == "ELLA 2.1.0: akseptansetesten kan starte"
    body = message.get_content()
    assert "«Akseptansetest pågår, vennligst vent med å bruke ELLA som normal" in body
    assert message.get_content_charset() == "utf-8"


def test_down_notice_reaches_every_users_list_in_norwegian(smtp):
    inbox, env = smtp
    assert run_cli("notify", "down", "--send", env=env).returncode == 0
    [envelope] = inbox.envelopes
    assert sorted(envelope.rcpt_tos) == sorted([f"{u}@sandbox.invalid" for u in USERS] + ["ella-support@sandbox.invalid"])
    message = message_of(envelope)
    assert message["Subject"] == "ELLA er utilgjengelig – vi jobber med saken"
    assert "ELLA er for øyeblikket utilgjengelig" in message.get_content()


def test_a_failed_send_is_one_line_and_non_zero(smtp):
    _, env = smtp
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = str(probe.getsockname()[1])
    failed = run_cli("notify", "down", "--send", env={"ELLA_SANDBOX_SMTP_PORT": closed})
    assert failed.returncode == 2
    assert "not sent via 127.0.0.1" in failed.stderr and "Traceback" not in failed.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["notify", "release", "--version", "2.1.0"], "say when with --at"),
    (["notify", "done"], "say which version with --version"),
    (["notify", "done", "--version", "2.1"], "is not X.Y.Z"),
    (["notify", "party"], "invalid choice"),
])
def test_notice_bad_input(args, message):
    result = run_cli(*args)
    assert result.returncode == 64
    assert message in result.stderr


def test_tsd_sees_counts_and_states_not_patient_data():
    from ella_deploy import notify

    measured = {"database": {"long_running": [{"pid": 7, "seconds": 400.0, "query": "SELECT * FROM patient WHERE x"}],
                             "uiexceptions_newest": [{"time": "t", "message": "Ola Nordmann 010190"}]},
                "api": {"log": {"requests": 3, "newest_server_error": '"GET /api/v1/patients/010190"'}}}
    shown = notify.redacted(measured)
    text = str(shown)
    assert "patient" not in text and "010190" not in text and "Ola" not in text
    assert shown["database"]["long_running"][0]["seconds"] == 400.0 and shown["api"]["log"]["requests"] == 3
    assert measured["database"]["long_running"][0]["query"].startswith("SELECT")  # the caller's copy untouched


def test_one_line_only():
    assert run_cli("notify", "down", "--at", "i dag\nBcc: x@y").returncode == 64
    assert run_cli("report-tsd", "treg\nBcc: x@y").returncode == 64
