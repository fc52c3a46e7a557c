"""Progress by step: recorded and synthetic ansible-runner events (and journal snapshots)
turned into the steps the release plan lists, with their states and times."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ella_deploy import progress, release, remote
from ella_deploy.progress import DONE, FAILED, PENDING, RUNNING, SKIPPED

DATA = Path(__file__).parent / "data"
OPTIONS = release.ReleaseOptions(request="1.17.0")


def recorded(name: str) -> list[dict]:
    """A real release.yml run on the sandbox (ansible-runner's job events, trimmed to the fields
    the model reads): release_success (1.16.5 -> 1.17.0, two migrations), release_rollback (a
    migration that fails on purpose, rolled back)."""
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]


def release_steps(**kwargs) -> progress.ReleaseSteps:
    return progress.ReleaseSteps(plan_steps=lambda plan: release.plan_steps(plan, OPTIONS), **kwargs)


def by_key(model: progress.Steps) -> dict[str, progress.Step]:
    return {step.key: step for step in model.snapshot()}


def journal_of(events: list[dict], task_prefix: str) -> dict:
    return next(e["event_data"]["res"]["journal"] for e in events
                if e["event"] == "runner_on_ok" and e["event_data"].get("task", "").startswith(task_prefix))


def test_a_recorded_release_gives_the_plans_steps_with_the_hosts_times() -> None:
    events = recorded("release_success")
    model = release_steps()
    for event in events:
        model.observe_event(event)
    model.close()
    steps = by_key(model)
    assert [s.key for s in model.snapshot()] == ["preflight", "lock", "configure", "stop", "rollback_point", "switch",
                                                 "migrate", "start", "broadcast", "backup", "record"]
    assert all(s.state == DONE for s in steps.values()), {k: s.state for k, s in steps.items()}
    # The plan was learnt from the run itself (as with --yes): numbered as `release --check` lists them.
    plan = next(e["event_data"]["res"]["ansible_facts"]["ella_release_plan"] for e in events
                if e["event_data"].get("task") == "Set the release plan" and e["event"] == "runner_on_ok")
    assert [s.text for s in model.snapshot() if s.number] == release.steps_of(plan, OPTIONS)
    assert [s.number for s in model.snapshot()] == [None, *range(1, 11)]
    # The window's steps carry the times the host measured (its journal), not the controller's.
    journal = journal_of(events, "Start ELLA and wait until it serves")
    host = {s["step"]: s for s in journal["steps"]}
    for key in ("stop", "rollback_point", "switch", "migrate"):
        assert steps[key].started == pytest.approx(host[key]["started"])
        assert steps[key].finished == pytest.approx(host[key]["finished"])
    assert steps["migrate"].detail == "2 revisions applied, at 92066141f180"
    assert steps["start"].finished == pytest.approx(host["start"]["finished"])
    assert steps["start"].detail.startswith("serving; health gate passed after ")
    # `start` began with the guard before it (mark guard_start), not when the module began.
    marks = journal_of(events, "Start ELLA and wait")  # same journal; the mark is the controller's
    assert steps["start"].started < host["start"]["started"]
    assert marks["id"] == journal["id"]
    assert model.downtime() == pytest.approx(host["start"]["finished"] - host["stop"]["started"])
    assert model.staged == ["ella-release-v1.16.5.sif", "ella-release-v1.17.0.sif", "ella-release-v1.17.1.sif",
                            "ella-release-v1.17.2.sif"]
    data = model.as_dict()
    assert data["downtime_seconds"] == pytest.approx(model.downtime(), abs=0.001)
    assert [s["key"] for s in data["steps"]][:3] == ["preflight", "lock", "configure"]
    assert all(s["seconds"] is not None for s in data["steps"])


def test_a_failed_migration_fails_its_step_and_adds_the_rollback() -> None:
    model = release_steps()
    for event in recorded("release_rollback"):
        model.observe_event(event)
    model.close(failed=True)
    order = [(s.key, s.state) for s in model.snapshot()]
    assert order == [("preflight", DONE), ("lock", DONE), ("configure", DONE), ("stop", DONE),
                     ("rollback_point", DONE), ("switch", DONE), ("migrate", FAILED), ("rollback", DONE),
                     ("start", SKIPPED), ("broadcast", SKIPPED), ("backup", SKIPPED), ("record", DONE)]
    steps = by_key(model)
    assert "ella-cli database upgrade head exited 1" in steps["migrate"].detail
    # The task that re-raises the failure at the end ("Fail with the operation's own message")
    # does not fail the audit record's step; the downtime ends when the previous version served.
    assert steps["record"].detail == ""
    assert model.downtime() == pytest.approx(steps["rollback"].finished - steps["stop"].started)


def event(kind: str, task: str = "", at: float = 1000.0, **data) -> dict:
    return {"event": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}",
            "event_data": {"task": task, **data}}


def mark(step: str, at: float) -> dict:
    return event("runner_on_ok", f"Mark the start of step {step}", at,
                 res={"ansible_facts": {"ella_release_marks": [{"step": step, "at": at}]}})


PLANNED = [("lock", "take the deploy lock"), ("configure", "render"), ("stop", "stop ELLA"),
           ("rollback_point", "rollback point"), ("switch", "switch"), ("migrate", "migrate"),
           ("start", "start"), ("backup", "backup"), ("record", "record")]


def test_the_journal_read_live_shows_the_window_step_by_step() -> None:
    now = [1000.0]
    model = progress.ReleaseSteps(PLANNED, expected={"migrate": 40.0}, clock=lambda: now[0])
    changes: list[tuple[str, str]] = []
    model.subscribe(lambda kind, payload: changes.append((payload.key, payload.state)) if kind == "step" else None)
    model.observe_event(event("playbook_on_start", at=1000.0))
    # The journal the last release left, read before this run's window begins: never shown.
    old = {"id": "prod-1.16.5-x", "phase": "done", "updated": 900.0,
           "steps": [{"step": s, "state": "done", "started": 800.0, "finished": 801.0} for s in ("stop", "migrate")]}
    model.observe_journal(old)
    model.observe_event(event("playbook_on_task_start", "Take the deploy lock", 1010.0))
    model.observe_event(mark("guard", 1011.0))
    model.observe_event(mark("configure", 1015.0))
    model.observe_event(event("playbook_on_task_start",
                              "Run the window on the host - stop, rollback point, switch, migrate, fixtures", 1020.0))
    assert by_key(model)["stop"].state == RUNNING
    assert by_key(model)["stop"].detail == progress.WINDOW_DETAIL
    model.observe_journal(old)  # still the old one, read once more before the module rewrote it
    assert by_key(model)["migrate"].state == PENDING
    ours = {"id": "prod-1.17.0-y", "phase": "window", "updated": 1031.0, "steps": [
        {"step": "stop", "state": "done", "started": 1020.5, "finished": 1024.0},
        {"step": "rollback_point", "state": "done", "started": 1024.0, "finished": 1029.0, "seconds": 5.0},
        {"step": "switch", "state": "done", "started": 1029.0, "finished": 1029.1},
        {"step": "migrate", "state": "started", "started": 1029.1}]}
    now[0] = 1040.0
    model.observe_journal(ours)
    steps = by_key(model)
    assert [steps[k].state for k in ("configure", "stop", "rollback_point", "switch", "migrate", "start")] == [
        DONE, DONE, DONE, DONE, RUNNING, PENDING]
    assert steps["configure"].finished == 1020.0
    assert steps["stop"].started == 1020.5 and steps["stop"].detail == ""
    assert steps["migrate"].seconds(now[0]) == pytest.approx(10.9)
    assert steps["migrate"].expected == 40.0
    assert model.downtime(now[0]) == pytest.approx(19.5)
    # A snapshot older than one already merged changes nothing.
    model.observe_journal({**ours, "updated": 1025.0, "steps": ours["steps"][:1]})
    assert by_key(model)["migrate"].state == RUNNING
    # The window's own result (its whole journal) ends it; the start gate's wait shows as it runs.
    done = {**ours, "phase": "window_done", "updated": 1070.0, "steps": [
        *ours["steps"][:3], {"step": "migrate", "state": "done", "started": 1029.1, "finished": 1069.0,
                             "applied": ["a -> b, one", "b -> c, two", "c -> d, three"], "revision": "d"}]}
    model.observe_event(event("runner_on_ok", "Run the window on the host - stop, ...", 1070.0, res={"journal": done}))
    model.observe_event(mark("guard_start", 1071.0))
    model.observe_event(event("playbook_on_task_start", "Start ELLA and wait until it serves", 1074.0))
    start = by_key(model)["start"]
    assert (start.state, start.started, start.waiting, start.waiting_since) == (RUNNING, 1071.0, "health gate", 1074.0)
    assert by_key(model)["migrate"].detail == "3 revisions applied, at d"
    assert ("migrate", DONE) in changes and changes.count(("migrate", RUNNING)) == 1
    # Another release's journal (an id never seen) is not merged into this one.
    model.observe_journal({"id": "someone-else", "phase": "window", "updated": 2000.0,
                           "steps": [{"step": "start", "state": "failed", "started": 1999.0, "finished": 2000.0}]})
    assert by_key(model)["start"].state == RUNNING


def test_without_the_plan_the_steps_come_when_the_run_publishes_it() -> None:
    model = release_steps()
    assert [s.key for s in model.snapshot()] == ["preflight"]
    model.observe_event(event("playbook_on_task_start", "Reach the host", 1.0))
    assert by_key(model)["preflight"].state == RUNNING
    for kind, task, data in [("runner_on_failed", "Refuse a downgrade unless allowed",
                              {"res": {"msg": "2.0.0 is older than the running 2.1.0\nmore"}}),
                             ("runner_on_failed", "Fail with the operation's own message", {"res": {"msg": "again"}})]:
        model.observe_event(event(kind, task, 2.0, **data))
    model.observe_event(event("playbook_on_stats", "", 3.0, failures={"h": 1}))
    model.close(failed=True)
    (preflight,) = model.snapshot()
    assert (preflight.state, preflight.detail) == (FAILED, "Refuse a downgrade unless allowed: 2.0.0 is older than "
                                                           "the running 2.1.0")


def test_a_message_from_the_library_is_a_note_and_a_task_name_is_not() -> None:
    model = progress.ReleaseSteps(PLANNED)
    told: list[tuple[str, str]] = []
    model.subscribe(lambda kind, payload: told.append((kind, payload)) if kind != "step" else None)
    model.observe_event(event("playbook_on_task_start", "Choose the host", 1.0))
    model("Choose the host")  # runner.run_playbook's progress(task_name) right after the event
    model("Interrupted: the host stops after its current step")
    model.observe_event(event("playbook_on_task_start", "Validating arguments against arg spec 'main'", 2.0))
    assert told == [("task", "Choose the host"), ("note", "Interrupted: the host stops after its current step")]


def test_task_steps_keep_the_progress_contract_and_mark_the_step_a_run_failed_in() -> None:
    model = progress.TaskSteps()
    model("Find the reachable hosts")
    model.observe_event(event("runner_on_failed", "Probe", 1.0, res={"msg": "rescued later"}))
    model("Stop ELLA under the deploy lock")
    model.observe_event(event("runner_on_failed", "Refuse to stop", 2.0, res={"msg": "lock held by kari\nsince"}))
    model.observe_event(event("playbook_on_stats", "", 3.0, failures={"p22-ella-01": 1}, dark={}))
    model("Next playbook")
    model.observe_event(event("runner_on_failed", "Ignored", 4.0, ignore_errors=True, res={"msg": "x"}))
    model.observe_event(event("playbook_on_stats", "", 5.0, failures={}, dark={}))
    states = [(s.text, s.state, s.detail) for s in model.snapshot()]
    assert states == [("Find the reachable hosts", DONE, ""), ("Stop ELLA under the deploy lock", FAILED,
                                                               "lock held by kari"), ("Next playbook", DONE, "")]


def test_a_real_run_feeds_the_model_before_the_progress_callback(tmp_path: Path, monkeypatch) -> None:
    from ella_deploy.runner import run_playbook

    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    playbook = tmp_path / "playbook.yml"
    playbook.write_text("""\
---
- name: Two steps
  hosts: all
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: the deliberate failure
""")
    model = progress.TaskSteps()
    tasks: list[str] = []
    model.subscribe(lambda kind, payload: tasks.append(payload) if kind == "task" else None)
    result = run_playbook(playbook.resolve(), inventory, progress=model)
    assert not result.ok
    assert [(s.text, s.state) for s in model.snapshot()] == [("Say hello", DONE), ("Fail on purpose", FAILED)]
    assert model.snapshot()[1].detail == "the deliberate failure"
    assert tasks == ["Say hello", "Fail on purpose"]


class Blocking:
    """A journal source that hands out snapshots as the test releases them, like SSH would."""

    def __init__(self) -> None:
        self.items: list[dict | None] = []
        self.ready = threading.Condition()
        self.closed = False

    def put(self, item: dict | None) -> None:
        with self.ready:
            self.items.append(item)
            self.ready.notify_all()

    def __iter__(self):
        while True:
            with self.ready:
                self.ready.wait_for(lambda: self.items or self.closed, timeout=5)
                if self.closed and not self.items:
                    return
                item = self.items.pop(0)
            yield item

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify_all()


def test_the_follower_hands_snapshots_to_the_model_and_stops() -> None:
    model = progress.ReleaseSteps(PLANNED, clock=lambda: 2000.0)
    source = Blocking()
    follower = progress.JournalFollower(source, model).start()
    source.put(None)  # no journal on the host yet
    source.put({"id": "old", "phase": "done"})
    model.observe_event(event("playbook_on_task_start", "Run the window on the host - ...", 1000.0))
    source.put({"id": "new", "phase": "window", "updated": 1001.0,
                "steps": [{"step": "stop", "state": "started", "started": 1000.5}]})
    deadline = time.monotonic() + 5
    while by_key(model)["stop"].started != 1000.5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert by_key(model)["stop"].started == 1000.5
    follower.stop()
    assert not follower._thread.is_alive()
    assert follower.error == ""


def test_the_remote_loop_reads_each_version_of_the_journal(tmp_path: Path) -> None:
    """remote.JOURNAL_LOOP as the host runs it (here locally, without ssh)."""
    journal = tmp_path / "journal.json"
    reader = remote.RemoteJournal(["sh", "-c", remote.JOURNAL_LOOP, "ella-journal", str(journal), "0.05"])
    seen: list[dict | None] = []

    def read() -> None:
        for snapshot in reader:
            seen.append(snapshot)
            if snapshot is None and not journal.exists():
                journal.write_text(json.dumps({"id": "x", "phase": "window", "note": "a\x1eb"}))
            elif snapshot:
                return

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(10)
    reader.close()
    assert seen[0] is None and seen[-1] == {"id": "x", "phase": "window", "note": "a\x1eb"}
    assert reader._process is not None and reader._process.poll() is not None


def test_the_remote_reader_ends_when_closed_while_it_waits(tmp_path: Path) -> None:
    reader = remote.RemoteJournal(["sh", "-c", "sleep 30"])
    model = progress.ReleaseSteps(PLANNED)
    follower = progress.JournalFollower(reader, model).start()
    time.sleep(0.2)
    started = time.monotonic()
    follower.stop()
    assert time.monotonic() - started < 4
    assert not follower._thread.is_alive()


def test_staged_versions_are_read_from_release_file_names() -> None:
    assert progress.staged_versions(["ella-release-v1.17.0.sif", "ella-release-1.2.10.sif", "ella-release-v1.2.9.sif",
                                     "notes.txt", "ella-release-v1.17.0.sif.sha256"]) == ["1.2.9", "1.2.10", "1.17.0"]


def test_rehearsal_expectations() -> None:
    assert progress.rehearsal_expectations(None) == {}
    assert progress.rehearsal_expectations({"rollback_point_seconds": "2.5", "migration_seconds": 40,
                                            "backup_seconds": None}) == {"rollback_point": 2.5, "migrate": 40.0}


def test_a_journal_loop_argv_runs_as_the_service_user_over_batch_ssh() -> None:
    connection = remote.Connection(host="p22-ella-01", address="10.0.0.1", port=22, user="deploy", private_key="",
                                   ssh_args="", service_user="ella", root="/ess/p22/ella", pgpassfile="",
                                   database={})
    argv = remote.RemoteJournal.over_ssh(connection).argv
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"]
    assert "sudo -n -u ella" in argv[-1] and "/ess/p22/ella/deploy/journal.json" in argv[-1]
    assert subprocess.run(["sh", "-n", "-c", remote.JOURNAL_LOOP], check=False).returncode == 0
