"""Audit step timing and downtime from a release's marks."""

from __future__ import annotations

from ella_deploy import audit, history

MARKS = [
    {"step": "configure", "at": 100.0},
    {"step": "stop", "at": 102.0},
    {"step": "backup", "at": 103.5},
    {"step": "start", "at": 106.0},
    {"step": "broadcast", "at": 111.0},
    {"step": "done", "at": 112.0},
]


def test_steps_end_where_the_next_begins():
    steps = audit.steps_from_marks(MARKS, finished=113.0)
    assert [(s["name"], s["seconds"]) for s in steps] == [
        ("configure", 2.0), ("stop", 1.5), ("backup", 2.5), ("start", 5.0), ("broadcast", 1.0), ("done", 1.0),
    ]


def test_downtime_runs_from_stop_until_serving_again():
    assert audit.downtime_seconds(MARKS) == 9.0


def test_downtime_of_a_rollback_ends_when_the_old_version_serves():
    marks = MARKS[:3] + [{"step": "rollback", "at": 104.0}, {"step": "rollback_done", "at": 120.0}]
    assert audit.downtime_seconds(marks) == 18.0


def test_downtime_without_an_end_lasts_until_the_run_finished():
    assert audit.downtime_seconds(MARKS[:3], finished=150.0) == 48.0
    assert audit.downtime_seconds(MARKS[:1], finished=150.0) is None


def test_unreadable_lines_are_reported_not_dropped():
    records = audit.read_records('{"kind": "release"}\nnot json\n\n{"kind": "accept"}\n')
    assert [r.get("kind", r.get("outcome")) for r in records] == ["release", "UNREADABLE", "accept"]


def test_history_table_shows_each_record():
    table = history.render([
        {"kind": "release", "operator": "kari@ops", "host": "p22-ella-01", "from_version": "2.0.0",
         "to_version": "2.1.0", "change_kind": "minor", "outcome": "success", "downtime_seconds": 12.34,
         "started": 1764100000.0},
        {"kind": "accept", "operator": "ola@ops", "host": "p22-ella-01", "version": "2.1.0", "outcome": "success"},
    ])
    lines = table.splitlines()
    assert len(lines) == 3
    assert "2.0.0 -> 2.1.0 (minor)" in lines[1] and "12.3s" in lines[1] and "kari@ops" in lines[1]
    assert "accept" in lines[2]


def test_command_lines_lose_secret_values_before_the_record():
    command = audit.sanitized_command(["--inventory", "prod", "release", "2.1.0", "--db-password=hunter22",
                                       "--api-token", "abc123"])
    assert "hunter22" not in command and "abc123" not in command
    assert command.startswith("ella-deploy --inventory prod release 2.1.0")


def test_run_metadata_names_operator_command_and_fenced_hosts():
    metadata = audit.run_metadata("ella-deploy failover", ["p22-ella-01"])
    assert metadata["ella_deploy_command"] == "ella-deploy failover"
    assert metadata["ella_deploy_fenced_hosts"] == ["p22-ella-01"]
    assert "@" in metadata["ella_deploy_operator"]


def test_a_commands_data_never_reaches_its_recorded_command_line():
    from ella_deploy import audit as audit_module

    argv = ["-i", "prod", "broadcast", "new", "Nedetid fredag 16-18", "--yes"]
    command = audit_module.sanitized_command(audit_module.without_data(argv, ["Nedetid fredag 16-18"]))
    assert command == "ella-deploy -i prod broadcast new '<data>' --yes"
    assert audit_module.without_data(["cli", "--", "users", "list"], []) == ["cli", "--", "users", "list"]
