"""The audit log's chain: ella_audit (ansible/plugins/modules/ella_audit.py, run as Ansible runs
a module) links every record to the line before it, and ella_deploy/audit.py's verify_chain
finds an edited, removed or inserted line, and skips a torn one without losing the chain."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from ella_deploy import audit
from tests.unit import plugins


def append(log: Path, **record) -> dict:
    log.parent.mkdir(parents=True, exist_ok=True)
    args = log.parent / f"args-{threading.get_ident()}.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"path": str(log), "record": record}}))
    done = subprocess.run([*plugins.module_command("ansible/plugins/modules/ella_audit.py"), str(args)],
                          capture_output=True, text=True, check=False)
    result = json.loads(done.stdout)
    assert not result.get("failed"), result
    return result["record"]


def test_every_record_names_the_line_before_it_and_the_chain_verifies(tmp_path):
    log = tmp_path / "deploy" / "audit.jsonl"
    first = append(log, kind="release", outcome="success", to_version="1.17.0")
    append(log, kind="accept", outcome="success", version="1.17.0")
    lines = log.read_text().splitlines()
    assert first["prev"] == "" and json.loads(lines[1])["prev"] == audit.line_digest(lines[0])
    chain = audit.verify_chain(log.read_text())
    assert chain == {"intact": True, "records": 2, "chained": 2, "unchained": 0, "torn_lines": [], "broken": []}


def test_an_edited_a_removed_and_an_inserted_line_break_the_chain_where_they_are(tmp_path):
    log = tmp_path / "audit.jsonl"
    for number in range(4):
        append(log, kind="backup", outcome="success", number=number)
    lines = log.read_text().splitlines()
    edited = lines.copy()
    edited[1] = edited[1].replace('"success"', '"failed"')
    assert [b["line"] for b in audit.verify_chain("\n".join(edited) + "\n")["broken"]] == [3]
    removed = lines[:1] + lines[2:]
    assert [b["line"] for b in audit.verify_chain("\n".join(removed) + "\n")["broken"]] == [2]
    inserted = lines[:2] + [json.dumps({"kind": "release", "outcome": "success", "prev": "forged"})] + lines[2:]
    assert audit.verify_chain("\n".join(inserted) + "\n")["intact"] is False
    unlinked = lines[:2] + [json.dumps({"kind": "release", "outcome": "success"})] + lines[2:]
    broken = audit.verify_chain("\n".join(unlinked) + "\n")["broken"]
    assert broken[0] == {"line": 3, "why": "a record without the link to the line before it"}
    assert "NOT intact: line 3" in audit.describe_chain(audit.verify_chain("\n".join(unlinked) + "\n"))


def test_a_torn_last_line_is_closed_skipped_and_kept_in_the_chain(tmp_path):
    log = tmp_path / "audit.jsonl"
    append(log, kind="release", outcome="success", to_version="1.17.0")
    with log.open("ab") as handle:
        handle.write('{"kind": "accept", "outcome": "succ\xc3'.encode("latin-1"))  # a crash mid-write
    text = log.read_bytes().decode("utf-8", "surrogateescape")
    assert audit.verify_chain(text)["torn_lines"] == [2]
    assert [r["kind"] for r in audit.valid_records(text)] == ["release"]
    after = append(log, kind="accept", outcome="success", version="1.17.0")
    text = log.read_bytes().decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    assert len(lines) == 4 and lines[3] == ""          # the torn line was closed, the record is whole
    assert after["prev"] == audit.line_digest(lines[1])
    chain = audit.verify_chain(text)
    assert chain["intact"] and chain["torn_lines"] == [2] and chain["chained"] == 2
    assert "torn line(s) skipped: 2" in audit.describe_chain(chain)


def test_records_from_before_the_chain_are_counted_not_broken(tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps({"kind": "release", "outcome": "success"}) + "\n")
    append(log, kind="accept", outcome="success")
    chain = audit.verify_chain(log.read_text())
    assert chain["intact"] and chain["unchained"] == 1 and chain["chained"] == 1


def test_writers_at_once_each_link_to_a_whole_line(tmp_path):
    log = tmp_path / "audit.jsonl"
    threads = [threading.Thread(target=append, args=(log,), kwargs={"kind": "cli", "n": n}) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chain = audit.verify_chain(log.read_text())
    assert chain["intact"] and chain["chained"] == 6, chain


def test_the_staging_gate_trusts_only_an_intact_chain(tmp_path, monkeypatch):
    import base64
    from types import SimpleNamespace

    from ella_deploy import history, paths, release

    log = tmp_path / "audit.jsonl"
    append(log, kind="release", outcome="failed", to_version="2.1.0")
    append(log, kind="accept", outcome="success", version="2.0.0")
    lines = log.read_text().splitlines()
    # Someone turned the failed staging release into a success by hand.
    forged = "\n".join([lines[0].replace('"failed"', '"success"'), lines[1]]) + "\n"

    def read(text):
        return lambda playbook, inventory, **_: SimpleNamespace(
            ok=True, published={"ella_audit_log": base64.b64encode(text.encode()).decode()})

    monkeypatch.setattr(history, "_READ", {})
    monkeypatch.setattr(history, "_CHAIN", {})
    monkeypatch.setattr(history, "run_playbook", read(forged))
    verified, error = release.staging_verified(paths.resolve_inventory("sandbox"), skip=False)
    assert verified == () and "sandbox-staging's audit log is NOT intact: line 2" in error

    # The same log torn at its end by a crash: the gate still reads what is whole.
    monkeypatch.setattr(history, "_READ", {})
    monkeypatch.setattr(history, "_CHAIN", {})
    honest = lines[0].replace('"failed"', '"success"')
    log.write_text("")
    append(log, **json.loads(honest) | {"prev": None})
    monkeypatch.setattr(history, "run_playbook", read(log.read_text() + '{"kind": "acc'))
    verified, error = release.staging_verified(paths.resolve_inventory("sandbox"), skip=False)
    assert (verified, error) == (("2.1.0",), "")
