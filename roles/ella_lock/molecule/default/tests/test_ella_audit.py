"""ella_audit, in ella_lock's scenario: converge and side_effect each appended a record: one
JSON line per run, in order, never rewritten, private to the service user."""

from __future__ import annotations

import json

from ella_molecule import instances, inventory_vars

testinfra_hosts = instances()


def audit_log(host):
    return host.file(inventory_vars(host)["ella_root"] + "/deploy/audit.jsonl")


def test_audit_log_is_private_to_the_service_user(host):
    log = audit_log(host)
    assert log.is_file
    assert log.user == "ella"
    assert log.mode == 0o640


def test_one_json_line_per_run_in_order(host):
    content = audit_log(host).content_string
    assert content.endswith("\n")
    records = [json.loads(line) for line in content.splitlines()]
    # converge appended the first, side_effect the second.
    assert [record["command"] for record in records] == ["molecule converge", "molecule side_effect"]
    first, second = records
    assert first["operator"] == "molecule"
    assert first["environment"] == "molecule"
    assert (first["version"], first["outcome"]) == ("1.16.5", "success")
    assert (second["version"], second["outcome"]) == ("1.17.2", "failed")
    # The lock converge broke, as the record of an operation keeps it (never its token).
    assert first["lock_broken"]["operator"] == "stale"
    assert "token" not in first["lock_broken"]
    # The module stamps each record; records are written in time order.
    assert first["recorded"].endswith("Z")
    assert first["recorded"] <= second["recorded"]
