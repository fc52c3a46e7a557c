"""The playbooks' filters (ansible/plugins/filter/ella.py), loaded by path as Ansible loads them:
the same rules as the CLI, and what they make of missing input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_filters():
    spec = importlib.util.spec_from_file_location("ella_filters_under_test", ROOT / "ansible/plugins/filter/ella.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ella = load_filters()
NAMES = ["p22-ella-01", "p22-ella-fo-01"]
ADDRESSES = {"p22-ella-01": "127.0.0.1", "p22-ella-fo-01": ["10.0.0.2"]}


def facts(state: str = "STOPPED", processes: int = 0) -> dict:
    return {"program": {"state": state}, "processes": [{"pid": 100 + n, "supervised": True} for n in range(processes)]}


REPORTS = {"p22-ella-01": facts("RUNNING", 1), "p22-ella-fo-01": facts()}


def test_every_filter_is_registered() -> None:
    registered = ella.FilterModule().filters()
    public = {name for name in vars(ella) if name.startswith("ella_") and callable(getattr(ella, name))}
    assert set(registered) == public
    assert all(registered[name] is getattr(ella, name) for name in registered)


def test_guard_verdict_with_unreadable_sessions_is_unknown() -> None:
    verdict = ella.ella_guard_verdict(REPORTS, NAMES, (), None, ADDRESSES)
    assert verdict["state"] == "UNKNOWN" and verdict["db_sessions"] is None
    assert any("could not be read" in reason for reason in verdict["reasons"])


def test_guard_verdict_with_no_sessions_judges_the_processes() -> None:
    verdict = ella.ella_guard_verdict(REPORTS, NAMES, (), [], ADDRESSES)
    assert verdict == {"state": "ONE ACTIVE", "active_hosts": ["p22-ella-01"], "reasons": [], "db_sessions": {}}


def test_guard_verdict_counts_sessions_from_the_standby_and_from_outside() -> None:
    rows = [{"client": "127.0.0.1"}, {"client": "10.0.0.2"}]
    verdict = ella.ella_guard_verdict(REPORTS, NAMES, [], rows, ADDRESSES)
    assert verdict["state"] == "CONFLICT" and verdict["active_hosts"] == NAMES
    assert verdict["db_sessions"] == {"p22-ella-01": 1, "p22-ella-fo-01": 1}
    foreign = ella.ella_guard_verdict(REPORTS, NAMES, [], [{"client": "10.9.9.9"}], ADDRESSES)
    assert foreign["state"] == "CONFLICT"


def test_guard_verdict_a_host_missing_from_the_reports_is_unreachable() -> None:
    verdict = ella.ella_guard_verdict({"p22-ella-01": facts("RUNNING", 1)}, NAMES, None, [], ADDRESSES)
    assert verdict["state"] == "UNKNOWN"
    fenced = ella.ella_guard_verdict({"p22-ella-01": facts("RUNNING", 1)}, NAMES, ["p22-ella-fo-01"],
                                     [{"client": "10.0.0.2"}], ADDRESSES)
    assert fenced["state"] == "ONE ACTIVE" and fenced["active_hosts"] == ["p22-ella-01"]
    assert ella.ella_guard_verdict(None, NAMES, (), [], ADDRESSES)["state"] == "UNKNOWN"


def test_guard_reports_take_unreachable_and_failed_probes_for_unknown() -> None:
    results = [{"item": "a", "ella_host": {"x": 1}}, {"item": "b", "unreachable": True, "ella_host": {"x": 2}},
               {"item": "c", "failed": True, "ella_host": {"x": 3}},
               {"item": "d", "unreachable": False, "failed": False, "ella_host": {}}]
    assert ella.ella_guard_reports(results) == {"a": {"x": 1}, "b": None, "c": None, "d": {}}


def test_probes_of_the_reach_play_read_as_the_probe_loops_results() -> None:
    """A host the play over the hosts did not probe (or skipped) is left to the guard's own
    loop; an unreachable one and a failed one stay unknown."""
    hostvars = {"a": {"ella_guard_probe": {"ella_host": {"x": 1}}}, "b": {"ella_guard_probe": {"skipped": True}},
                "c": {"ella_guard_probe": {"unreachable": True, "msg": "timeout"}},
                "d": {"ella_guard_probe": {"failed_when_result": False, "msg": "no supervisord socket"}}}
    results = ella.ella_guard_probe_results(["a", "b", "c", "d", "e"], hostvars)
    assert [r["item"] for r in results] == ["a", "c", "d"]
    assert ella.ella_guard_reports(results) == {"a": {"x": 1}, "c": None, "d": None}


def test_resolve_addresses_keeps_the_given_address() -> None:
    assert ella.ella_resolve_addresses("127.0.0.1") == ["127.0.0.1"]


def test_release_resolve_names_the_file_or_the_error() -> None:
    files = ["/a/ella-release-v2.0.0.sif", "/a/ella-release-v2.1.0.sif", "/a/ella-release-v2.2.0-rc.1.sif"]
    assert ella.ella_release_resolve(files, "2.x") == {"version": "2.1.0", "file": "ella-release-v2.1.0.sif",
                                                       "error": ""}
    assert ella.ella_release_resolve(files, "v2.2.0-rc.1")["file"] == "ella-release-v2.2.0-rc.1.sif"
    missing = ella.ella_release_resolve(files, "3.x")
    assert missing["version"] == "" and missing["file"] == "" and "no staged release matches 3.x" in missing["error"]
    assert ella.ella_release_versions(files) == ["2.0.0", "2.1.0", "2.2.0-rc.1"]


def test_change_kind_with_no_current_version_is_initial() -> None:
    assert ella.ella_change_kind("2.0.0", "") == "initial"
    assert ella.ella_change_kind("2.0.0", None) == "initial"
    assert ella.ella_change_kind("1.9.0", "2.0.0") == "downgrade"


@pytest.mark.parametrize(("now", "recorded", "changed"), [
    ({"a": "1", "b": "2"}, {"a": "1", "b": "2"}, []),
    ({"a": "1", "b": "3"}, {"a": "1", "b": "2"}, ["b"]),
    ({"a": "1", "b": "2"}, {"a": "1"}, ["b"]),                      # never applied: applied now
    ({"a": "1"}, {"a": "1", "b": "2"}, []),                         # file gone: nothing to apply
    ({"a": "", "b": "9", "c": "8"}, {}, ["b", "c"]),
    (None, None, []),
])
def test_fixtures_changed_in_apply_order(now, recorded, changed) -> None:
    assert ella.ella_fixtures_changed(now, recorded, ["c", "b", "a"]) == changed[::-1]


def test_count_differences_name_only_tables_that_differ() -> None:
    assert ella.ella_count_differences({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 0}) == {
        "b": [2, 5], "c": [3, None], "d": [None, 0]}
    assert ella.ella_count_differences(None, None) == {}


@pytest.mark.parametrize(("journal", "serving", "action"), [
    (None, False, "none"),
    ({}, True, "none"),
    ({"phase": "closed", "version": "2.1.0"}, True, "none"),
    ({"phase": "live", "version": "2.1.0"}, False, "finish"),
    ({"phase": "starting", "version": "2.1.0"}, True, "finish"),
    ({"phase": "starting", "version": "2.1.0"}, False, "rollback"),
    ({"phase": "window", "version": "2.1.0"}, False, "rollback"),
    ({"phase": "rolled_back", "version": "2.1.0"}, False, "finish_rollback"),
])
def test_recovery_through_the_filter(journal, serving, action) -> None:
    assert ella.ella_recovery(journal, serving)["action"] == action


def test_journal_filters_read_as_the_cli_does() -> None:
    journal = {"id": "r1", "version": "2.1.0", "phase": "window", "steps": [
        {"step": "stop", "started": 10.0, "finished": 11.0, "state": "done"},
        {"step": "start", "started": 11.0, "finished": 20.0, "state": "done"}]}
    assert ella.ella_journal_summary(journal)["open"] is True
    assert ella.ella_journal_summary({}) is None
    steps = ella.ella_release_steps([{"step": "lock", "at": 5}], journal, "30")
    assert [(s["name"], s["seconds"]) for s in steps] == [("lock", 5.0), ("stop", 1.0), ("start", 9.0)]
    assert ella.ella_release_downtime(steps) == 10.0
    assert ella.ella_release_downtime(None) is None
    assert ella.ella_release_steps(None, None, 1) == []


def test_audit_filters_pass_their_input_on() -> None:
    marks = [{"step": "stop", "at": 1.0}, {"step": "served", "at": 4.0}]
    assert ella.ella_audit_steps(marks, "6")[0]["name"] == "stop"
    assert ella.ella_downtime(marks, "6") == ella._load("audit").downtime_seconds(marks, 6.0)
    assert ella.ella_downtime(None) == ella._load("audit").downtime_seconds([], None)


def test_sql_results_through_the_filter() -> None:
    statements = [{"number": 1, "line": 1, "summary": "UPDATE t"}]
    results = ella.ella_sql_results("@@ella-task 1\nUPDATE 3\nTime: 1.5 ms\n", statements)
    assert [(r["tag"], r["rows"], r["ms"]) for r in results] == [("UPDATE", 3, 1.5)]
    assert ella.ella_sql_results(None, None) == []


def test_rules_load_from_this_checkout_once() -> None:
    guard = ella._load("guard")
    assert guard is ella._load("guard")
    assert Path(guard.__file__).resolve() == ROOT / "ella_deploy" / "guard.py"
