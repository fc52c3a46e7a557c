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
    assert decision == {"action": "finish", "why": f"1.17.0 serves now (phase {phase}): finish the release; "
                                                   "nothing is restored over users' writes"}


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


# The cases mutation testing asked for (tests/unit/MUTATION.md).
IMAGE = "/ess/p22/data/durable/production/ella/archive/releases/ella-release-v2.1.0.sif"


def opened(phase: str, **extra) -> dict:
    return {"id": "r1", "version": "2.1.0", "previous_version": "2.0.0", "host": "p22-ella-01", "phase": phase,
            "image": IMAGE, "steps": [{"step": "stop", "state": "done"}, {"step": "rollback_point", "state": "done"},
                                      {"step": "migrate", "state": "running"}],
            **extra}


@pytest.mark.parametrize("entry", [None, {}, {"phase": "closed"}, {"phase": "done"}, {"version": "2.1.0"}])
def test_nothing_open_nothing_to_recover(entry) -> None:
    assert journal.recovery(entry, serving=True) == {"action": "none", "why": "no release is open"}
    assert not journal.is_open(entry)


def test_a_rollback_of_a_first_release_names_no_version() -> None:
    action = journal.recovery(opened("window", previous_version=None, steps=[]), serving=False)
    assert "roll back to no version" in action["why"] and "last step none" in action["why"]


def test_every_phase_before_closing_is_open() -> None:
    assert all(journal.is_open({"phase": phase}) for phase in journal.OPEN_PHASES)
    assert "live" in journal.OPEN_PHASES and "closed" not in journal.OPEN_PHASES


def test_summary_keeps_every_field_of_an_open_release() -> None:
    entry = opened("starting", rollback_point={"database": "ella_rollback_r1"}, started=1.0, updated=2.0,
                   outcome="failed")
    assert journal.summary(entry) == {
        "id": "r1", "version": "2.1.0", "previous_version": "2.0.0", "host": "p22-ella-01", "phase": "starting",
        "outcome": "failed", "open": True,
        "steps": [{"step": "stop", "state": "done"}, {"step": "rollback_point", "state": "done"},
                  {"step": "migrate", "state": "running"}],
        "rollback_database": "ella_rollback_r1", "started": 1.0, "updated": 2.0}
    closed = journal.summary({"phase": "closed"})
    assert closed["open"] is False and closed["steps"] == [] and closed["rollback_database"] is None
    assert journal.summary(None) is None and journal.summary({}) is None


def test_release_steps_merge_marks_and_the_journal_in_time_order() -> None:
    marks = [{"step": "lock", "at": "100"}, {"step": "served", "at": 131.5}]
    entry = {"steps": [{"step": "stop", "started": 110.0, "finished": 111.0, "state": "done"},
                       {"step": "migrate", "started": 111.0, "finished": None, "state": "failed"},
                       {"step": "start", "started": 120.0, "finished": 131.0, "state": "done"}]}
    steps = journal.release_steps(marks, entry, 140.0)
    assert steps == [
        {"name": "lock", "start": 100.0, "end": 110.0, "seconds": 10.0},
        {"name": "stop", "start": 110.0, "end": 111.0, "seconds": 1.0},
        {"name": "migrate", "start": 111.0, "end": 120.0, "seconds": 9.0, "state": "failed"},
        {"name": "start", "start": 120.0, "end": 131.0, "seconds": 11.0},
        {"name": "served", "start": 131.5, "end": 140.0, "seconds": 8.5},
    ]


def test_downtime_of_a_release_that_never_served_again_runs_until_the_end() -> None:
    steps = [{"name": "stop", "start": 5.0, "end": 6.0},
             {"name": "start", "start": 10.0, "end": 12.0, "state": "failed"}]
    assert journal.downtime_seconds(steps, 40.0) == 35.0
    assert journal.downtime_seconds(steps) is None
    assert journal.downtime_seconds([{"name": "lock", "start": 0.0, "end": 1.0}], 40.0) is None


def test_recover_says_why_in_the_operators_words() -> None:
    assert journal.recovery(opened("live"), serving=False) == {
        "action": "finish",
        "why": "2.1.0 went live (phase live): finish the release; nothing is restored over users' writes"}
    assert journal.recovery(opened("rolled_back"), serving=False) == {
        "action": "finish_rollback",
        "why": "the rollback of 2.1.0 was done (phase rolled_back): start the previous version if it is not "
               "running, then close the release"}
    assert journal.recovery(opened("window"), serving=False) == {
        "action": "rollback",
        "why": "2.1.0 never served (phase window, last step migrate (running)): roll back to 2.0.0"}


def test_release_steps_without_a_journal_are_the_marks() -> None:
    marks = [{"step": "lock", "at": 100.0}, {"step": "stop", "at": 101.0}, {"step": "served", "at": 103.0}]
    assert journal.release_steps(marks, None, 110.0) == [
        {"name": "lock", "start": 100.0, "end": 101.0, "seconds": 1.0},
        {"name": "stop", "start": 101.0, "end": 103.0, "seconds": 2.0},
        {"name": "served", "start": 103.0, "end": 110.0, "seconds": 7.0}]
    assert journal.release_steps(marks[:1], {"phase": "window"}, 100.5) == [
        {"name": "lock", "start": 100.0, "end": 100.5, "seconds": 0.5}]


def test_step_times_and_downtime_are_kept_to_the_millisecond() -> None:
    marks = [{"step": "stop", "at": 100.00012}, {"step": "served", "at": 101.23456}]
    steps = journal.release_steps(marks, None, 102.98765)
    assert steps == [{"name": "stop", "start": 100.0, "end": 101.235, "seconds": 1.234},
                     {"name": "served", "start": 101.235, "end": 102.988, "seconds": 1.753}]
    assert journal.downtime_seconds([{"name": "stop", "start": 1.00001, "end": 2.0},
                                     {"name": "served", "start": 3.23456, "end": 4.0}]) == 2.235
    assert journal.downtime_seconds([{"name": "stop", "start": 1.00001, "end": 2.0}], 3.23456) == 2.235


# ---- What the database says it served, and the operator's keep --------------------------------

SERVED = {"served": True, "requests": 3, "writes": 1, "users": 1, "cli_changes": 0,
          "summary": "3 request(s) of 1 user session(s) or writes, 1 of them writes"}
DONE_WINDOW = {**OPEN, "phase": "window_done", "migrate": True,
               "steps": [{"step": s, "state": "done"} for s in ("stop", "rollback_point", "switch", "migrate")]}


@pytest.mark.parametrize("phase", ["window", "window_done", "starting", "cancelled", "rollback_failed"])
def test_what_the_database_says_served_users_is_finished_never_restored(phase):
    # Started by hand after the interruption, then stopped: the probe sees nothing, the
    # database's own request log does.
    decision = journal.recovery({**OPEN, "phase": phase}, serving=False, served=SERVED)
    assert decision["action"] == "finish"
    assert "served users after the window" in decision["why"] and SERVED["summary"] in decision["why"]


def test_a_database_that_served_no_one_still_rolls_back():
    quiet = {**SERVED, "served": False, "requests": 0, "writes": 0, "users": 0}
    assert journal.recovery(DONE_WINDOW, serving=False, served=quiet)["action"] == "rollback"
    assert journal.recovery(DONE_WINDOW, serving=False, served=None)["action"] == "rollback"


def test_the_operator_keeps_a_new_version_that_is_in_place():
    decision = journal.recovery(DONE_WINDOW, serving=False, keep_new="users need ELLA now")
    assert decision["action"] == "finish" and "kept by the operator (users need ELLA now" in decision["why"]


@pytest.mark.parametrize(("journal_entry", "missing"), [
    (OPEN | {"migrate": True}, "migrate started"),
    ({**DONE_WINDOW, "steps": DONE_WINDOW["steps"][:3]}, "migrate not reached"),
    ({**DONE_WINDOW, "fixtures": [{"name": "usergroups"}]}, "fixtures not reached"),
    ({**DONE_WINDOW, "migrate": False, "steps": DONE_WINDOW["steps"][:2]}, "switch not reached"),
])
def test_keep_new_refuses_a_version_that_is_not_in_place(journal_entry, missing):
    decision = journal.recovery(journal_entry, serving=False, keep_new="x")
    assert decision["action"] == "refuse" and missing in decision["why"] and "recover` rolls it back" in decision["why"]


@pytest.mark.parametrize("phase", ["rolled_back", "rolled_back_running"])
def test_keep_new_refuses_after_the_rollback_was_done(phase):
    decision = journal.recovery({**DONE_WINDOW, "phase": phase}, serving=False, keep_new="x")
    assert decision["action"] == "refuse" and "rollback of 1.17.0 was done already" in decision["why"]


def test_keep_new_needs_no_more_than_what_went_live():
    decision = journal.recovery({**DONE_WINDOW, "phase": "live"}, serving=False, keep_new="x")
    assert decision["action"] == "finish" and "went live" in decision["why"]


def test_keep_new_names_every_step_that_is_missing():
    entry = {**OPEN, "migrate": True, "fixtures": [{"name": "usergroups"}]}
    decision = journal.recovery(entry, serving=False, keep_new="x")
    assert "(migrate started, fixtures not reached);" in decision["why"]


def test_served_without_a_summary_still_says_where_it_was_read():
    decision = journal.recovery(DONE_WINDOW, serving=False, served={"served": True})
    assert "ELLA's own log: requests since the window)" in decision["why"]


def test_summary_carries_the_error_of_a_failed_step():
    entry = {**OPEN, "steps": [{"step": "migrate", "state": "failed", "error": "alembic: boom"}]}
    assert journal.summary(entry)["steps"] == [{"step": "migrate", "state": "failed", "error": "alembic: boom"}]
