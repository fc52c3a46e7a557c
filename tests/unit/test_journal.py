"""The release journal's reading (ella_deploy/journal.py): what `recover` decides, the steps
and the downtime a record reports."""

from __future__ import annotations

import pytest

from ella_deploy import journal

OPEN = {"id": "r1", "version": "1.17.0", "previous_version": "1.16.5", "phase": "window",
        "steps": [{"step": "stop", "state": "done"}, {"step": "rollback_point", "state": "done"},
                  {"step": "switch", "state": "done"}, {"step": "migrate", "state": "started"}]}


@pytest.mark.parametrize("closed", [None, {}, {**OPEN, "phase": "done"}, {**OPEN, "phase": "unknown"}])
def test_nothing_to_recover_without_an_open_journal(closed):
    assert journal.recovery(closed, serving=True)["action"] == "none"
    assert journal.recovery(closed, serving=False)["action"] == "none"


@pytest.mark.parametrize("phase", ["window", "window_done", "starting", "cancelled", "rollback_failed"])
def test_what_never_served_is_rolled_back(phase):
    decision = journal.recovery({**OPEN, "phase": phase}, serving=False)
    assert decision["action"] == "rollback"
    assert "never served" in decision["why"] and "1.16.5" in decision["why"] and "migrate (started)" in decision["why"]


@pytest.mark.parametrize("phase", ["window_done", "starting"])
def test_what_serves_now_is_finished_never_restored(phase):
    # The start was interrupted after the API answered: users may have written.
    decision = journal.recovery({**OPEN, "phase": phase}, serving=True)
    assert decision["action"] == "finish" and "serves now" in decision["why"]


def test_what_went_live_is_finished_even_when_it_does_not_serve_now():
    decision = journal.recovery({**OPEN, "phase": "live"}, serving=False)
    assert decision["action"] == "finish" and "went live" in decision["why"]


@pytest.mark.parametrize("phase", ["rolled_back", "rolled_back_running"])
def test_a_done_rollback_is_finished_as_a_rollback(phase):
    assert journal.recovery({**OPEN, "phase": phase}, serving=False)["action"] == "finish_rollback"


def test_summary_says_what_is_open():
    summary = journal.summary({**OPEN, "rollback_point": {"database": "ella_rollback_x"}})
    assert summary["open"] and summary["rollback_database"] == "ella_rollback_x"
    assert [s["step"] for s in summary["steps"]] == ["stop", "rollback_point", "switch", "migrate"]
    assert not journal.summary({**OPEN, "phase": "done"})["open"]
    assert journal.summary(None) is None


def test_steps_take_the_hosts_times_and_the_marks_between():
    marks = [{"step": "guard", "at": 100.0}, {"step": "configure", "at": 101.0}, {"step": "guard_start", "at": 109.0}]
    host = {"steps": [{"step": "stop", "started": 102.0, "finished": 103.5, "state": "done"},
                      {"step": "migrate", "started": 104.0, "finished": 108.0, "state": "failed"},
                      {"step": "start", "started": 110.0, "finished": 120.0, "state": "done"}]}
    steps = journal.release_steps(marks, host, finished=125.0)
    assert [(s["name"], s["seconds"]) for s in steps] == [
        ("guard", 1.0), ("configure", 1.0), ("stop", 1.5), ("migrate", 4.0), ("guard_start", 1.0), ("start", 10.0)]
    assert steps[3]["state"] == "failed" and "state" not in steps[2]


def test_downtime_runs_from_the_stop_until_served():
    steps = [{"name": "stop", "start": 10.0, "end": 11.0}, {"name": "start", "start": 20.0, "end": 31.5}]
    assert journal.downtime_seconds(steps) == 21.5
    # A failed start did not serve; the rollback's mark did.
    failed = [steps[0], {"name": "start", "start": 20.0, "end": 50.0, "state": "failed"},
              {"name": "rollback_done", "start": 70.0, "end": 70.0}]
    assert journal.downtime_seconds(failed) == 60.0
    assert journal.downtime_seconds([steps[0]], finished=40.0) == 30.0
    assert journal.downtime_seconds([steps[0]]) is None
    assert journal.downtime_seconds([{"name": "start", "start": 1.0, "end": 2.0}]) is None
