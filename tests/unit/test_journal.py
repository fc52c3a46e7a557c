"""The release journal (ella_deploy/journal.py): what `recover` does, and the step times and
downtime the audit record gets."""

from __future__ import annotations

import pytest

from ella_deploy import journal

IMAGE = "/ess/p22/data/durable/production/ella/archive/releases/ella-release-v2.1.0.sif"


def opened(phase: str, **extra) -> dict:
    return {"id": "r1", "version": "2.1.0", "previous_version": "2.0.0", "host": "p22-ella-01", "phase": phase,
            "image": IMAGE, "steps": [{"step": "stop", "state": "done"}, {"step": "rollback_point", "state": "done"},
                                      {"step": "migrate", "state": "running"}],
            **extra}


@pytest.mark.parametrize("phase", ["window", "window_done", "starting", "cancelled", "rollback_failed"])
def test_a_release_that_never_served_is_rolled_back(phase: str) -> None:
    action = journal.recovery(opened(phase), None)
    assert action["action"] == "rollback"
    assert "roll back to 2.0.0" in action["why"] and "last step migrate (running)" in action["why"]


def test_a_release_that_went_live_is_never_restored() -> None:
    assert journal.recovery(opened("live"), None)["action"] == "finish"
    assert journal.recovery(opened("live"), "/x/ella-release-v2.0.0.sif")["action"] == "finish"
    assert "nothing is restored" in journal.recovery(opened("live"), None)["why"]


@pytest.mark.parametrize("phase", ["window", "window_done", "starting", "cancelled", "rollback_failed"])
def test_a_release_whose_new_image_serves_now_is_finished_not_restored(phase: str) -> None:
    # It may have served users: their writes are never rolled back.
    assert journal.recovery(opened(phase), "/elsewhere/ella-release-v2.1.0.sif")["action"] == "finish"


def test_another_image_serving_is_no_sign_of_go_live() -> None:
    assert journal.recovery(opened("starting"), "/x/ella-release-v2.0.0.sif")["action"] == "rollback"
    assert journal.recovery(opened("starting", image=""), "/x/ella-release-v2.1.0.sif")["action"] == "rollback"
    assert journal.recovery(opened("starting", image=None), "/x/anything.sif")["action"] == "rollback"


@pytest.mark.parametrize("phase", ["rolled_back", "rolled_back_running"])
def test_a_rollback_already_done_is_finished(phase: str) -> None:
    assert journal.recovery(opened(phase), None)["action"] == "finish_rollback"


@pytest.mark.parametrize("entry", [None, {}, {"phase": "closed"}, {"phase": "done"}, {"version": "2.1.0"}])
def test_nothing_open_nothing_to_recover(entry) -> None:
    assert journal.recovery(entry, IMAGE) == {"action": "none", "why": "no release is open"}
    assert not journal.is_open(entry)


def test_a_rollback_of_a_first_release_names_no_version() -> None:
    action = journal.recovery(opened("window", previous_version=None, steps=[]), None)
    assert "roll back to no version" in action["why"] and "last step none" in action["why"]


def test_every_phase_before_closing_is_open() -> None:
    assert all(journal.is_open({"phase": phase}) for phase in journal.OPEN_PHASES)
    assert "live" in journal.OPEN_PHASES and "closed" not in journal.OPEN_PHASES


def test_summary_says_what_is_open() -> None:
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


def test_downtime_runs_from_stop_until_served() -> None:
    steps = [{"name": "lock", "start": 0.0, "end": 5.0}, {"name": "stop", "start": 5.0, "end": 6.0},
             {"name": "start", "start": 10.0, "end": 17.25}, {"name": "backup", "start": 18.0, "end": 30.0}]
    assert journal.downtime_seconds(steps, 40.0) == 12.25
    # After a rollback: until the previous version served again.
    rolled = steps[:2] + [{"name": "start", "start": 10.0, "end": 12.0, "state": "failed"},
                          {"name": "rollback_done", "start": 20.0, "end": 21.0}]
    assert journal.downtime_seconds(rolled, 40.0) == 15.0
    served = steps[:2] + [{"name": "served", "start": 9.0, "end": 9.5}]
    assert journal.downtime_seconds(served) == 4.0


def test_downtime_of_a_release_that_never_served_again_runs_until_the_end() -> None:
    steps = [{"name": "stop", "start": 5.0, "end": 6.0},
             {"name": "start", "start": 10.0, "end": 12.0, "state": "failed"}]
    assert journal.downtime_seconds(steps, 40.0) == 35.0
    assert journal.downtime_seconds(steps) is None
    assert journal.downtime_seconds([{"name": "lock", "start": 0.0, "end": 1.0}], 40.0) is None


def test_recover_says_why_in_the_operators_words() -> None:
    assert journal.recovery(opened("live"), None) == {
        "action": "finish",
        "why": "2.1.0 went live (phase live): finish the release; nothing is restored over users' writes"}
    assert journal.recovery(opened("rolled_back"), None) == {
        "action": "finish_rollback",
        "why": "the rollback of 2.1.0 was done (phase rolled_back): start the previous version if it is not "
               "running, then close the release"}
    assert journal.recovery(opened("window"), None) == {
        "action": "rollback",
        "why": "2.1.0 never served (phase window, last step migrate (running)): roll back to 2.0.0"}


def test_an_image_named_without_a_folder_is_recognised_serving() -> None:
    entry = opened("starting", image="ella-release-v2.1.0.sif")
    assert journal.recovery(entry, "/x/ella-release-v2.1.0.sif")["action"] == "finish"


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
