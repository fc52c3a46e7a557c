"""Progress by step: what a run is doing, in the steps an operator reads, with their times.

A model is fed ansible-runner's structured events (never Ansible's text) and, during a
release, snapshots of the release journal the host writes at every step. Displays
(console.py) subscribe to it; `--output json` reads `as_dict()`. Nothing here prints or
imports a terminal library, so the models are tested with recorded or synthetic events.

Two models:

- `TaskSteps`, for every command: a step per task the playbook names itself (the
  `progress(task_name)` callback of runner.run_playbook, unchanged), done when the next one
  starts; the step in which a run ended on a failure is marked failed.
- `ReleaseSteps`, for `release`: the steps the plan lists (release.plan_steps), keyed as
  the playbook's marks and the host's journal name them:

  | step           | starts at                                   | ends at                      |
  |----------------|---------------------------------------------|------------------------------|
  | pre-flight     | the first event                             | the lock step's start        |
  | lock           | task "Take the deploy lock" (mark `guard`)  | mark `configure`             |
  | configure      | mark `configure`                            | the window's first step      |
  | stop ...       | window task start; then journal `stop`,     | journal (`finished`, state)  |
  | fixtures       | `rollback_point`, `switch`, `migrate`,      |                              |
  |                | `fixtures` (live reader or the task result) |                              |
  | start          | mark `guard_start`                          | journal `start` done/failed  |
  | broadcast      | mark `broadcast`                            | the next mark                |
  | backup         | mark `backup`                               | mark `done`                  |
  | record         | mark `done`                                 | close()                      |
  | rollback       | mark `rollback` (a row added when it runs)  | mark `rollback_done`         |

  Marks are read from the result of the `set_fact` in roles/ella_release/tasks/mark.yml
  (its `ella_release_marks`, the controller's clock); the window and start module calls
  return the whole journal in their result (`res.journal`), failed or not, so the host's
  exact step times arrive even without the live reader. A failed task fails the step that
  runs; tasks that only re-raise an earlier failure (RERAISING_TASKS) do not.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"

# Task names the playbooks and roles use; the contract between them and this module (as
# runner.REFUSING_TASKS is for refusals).
LOCK_TASK = "Take the deploy lock"
WINDOW_TASK = "Run the window on the host"
HEALTH_TASKS = ("Start ELLA and wait until it serves",)
STAGED_TASK = "List the staged release images"
PLAN_FACT = "ella_release_plan"
MARKS_FACT = "ella_release_marks"
# Tasks that fail only to hand an earlier, already reported failure to the caller.
RERAISING_TASKS = ("Fail the release", "Fail with the operation's own message", "Refuse, as the operation's own check did")
# Internal tasks no one needs to see, even with -v.
HIDDEN_TASKS = ("Validating arguments against arg spec",)

# A mark (roles/ella_release/tasks/mark.yml) -> the step it starts (None: it only ends one).
MARK_STEPS: dict[str, str | None] = {
    "guard": "lock", "configure": "configure", "guard_start": "start", "broadcast": "broadcast",
    "backup": "backup", "done": "record", "rollback": "rollback", "rollback_done": None,
}
# Steps the window module journals on the host (ansible/plugins/modules/ella_release_window.py).
JOURNAL_STEPS = ("stop", "rollback_point", "switch", "migrate", "fixtures", "start")
JOURNAL_STATES = {"started": RUNNING, "done": DONE, "failed": FAILED}
# Until the host's journal says more, the window is one call that started with the stop.
WINDOW_DETAIL = "the window runs on the host as one call: stop, rollback point, switch, migrate, fixtures"
PREFLIGHT_TEXT = "pre-flight: choose the host, plan, check (nothing is changed yet)"
ROLLBACK_TEXT = "roll back: previous symlink and configuration, the database from the rollback point if it " \
                "was written, the previous version started after the guard"


@dataclass
class Step:
    key: str
    text: str
    # The step's number in the plan (1..N); None for rows the plan does not list.
    number: int | None = None
    state: str = PENDING
    started: float | None = None
    finished: float | None = None
    detail: str = ""
    # Seconds the last rehearsal measured for this step (the plan's `rehearsal`).
    expected: float | None = None
    # What the step waits for now, since when (the health gate).
    waiting: str = ""
    waiting_since: float | None = None

    def seconds(self, now: float) -> float | None:
        if self.started is None:
            return None
        end = self.finished if self.finished is not None else now
        return max(0.0, end - self.started)

    def as_dict(self, now: float) -> dict[str, Any]:
        seconds = self.seconds(now)
        return {"key": self.key, "number": self.number, "text": self.text, "state": self.state,
                "started": self.started, "finished": self.finished,
                "seconds": None if seconds is None else round(seconds, 3), "detail": self.detail,
                "expected_seconds": self.expected}


class Listener(Protocol):
    def __call__(self, kind: str, payload: Any) -> None:
        """kind: "step" (a Step changed state), "task" (an Ansible task started: its name),
        "note" (a line for the operator)."""


def event_time(event: dict[str, Any], clock: Callable[[], float]) -> float:
    """When ansible-runner saw the event (`created`, UTC), else now."""
    created = event.get("created")
    if isinstance(created, str):
        try:
            moment = datetime.datetime.fromisoformat(created)
        except ValueError:
            return clock()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    return clock()


def _first_line(text: Any, limit: int = 160) -> str:
    line = next((part.strip() for part in str(text or "").splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _short(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


class Steps:
    """Steps with states and times, safe to feed from the runner's thread and a reader thread."""

    def __init__(self, title: str, clock: Callable[[], float] = time.time) -> None:
        self.title = title
        self.clock = clock
        self._lock = threading.RLock()
        self._steps: list[Step] = []
        self._listeners: list[Listener] = []
        self.started: float | None = None
        self.finished: float | None = None
        # Release image versions a run listed in archive/releases (for shell completion).
        self.staged: list[str] | None = None
        self._last_task = ""
        # Changes are told to listeners after the model's lock is released (a display that
        # renders from another thread takes that lock), one thread at a time, in order.
        self._outbox: list[tuple[str, Any]] = []
        self._dispatching = threading.Lock()

    # ---- observers -------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _emit(self, kind: str, payload: Any) -> None:
        self._outbox.append((kind, payload))

    def _dispatch(self) -> None:
        with self._dispatching:
            with self._lock:
                told, self._outbox = self._outbox, []
                listeners = list(self._listeners)
            for kind, payload in told:
                for listener in listeners:
                    listener(kind, payload)

    def note(self, text: str) -> None:
        with self._lock:
            self._emit("note", text)
        self._dispatch()

    # ---- reading ---------------------------------------------------------------------------
    def snapshot(self) -> list[Step]:
        with self._lock:
            return [dataclasses.replace(step) for step in self._steps]

    def step(self, key: str) -> Step | None:
        return next((s for s in self._steps if s.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            now = self.finished or self.clock()
            return {"title": self.title, "started": self.started, "finished": self.finished,
                    "seconds": None if self.started is None else round(now - self.started, 3),
                    "steps": [step.as_dict(now) for step in self._steps]}

    # ---- changing ----------------------------------------------------------------------------
    def _set(self, step: Step, state: str, at: float, detail: str | None = None) -> None:
        if state == RUNNING:
            step.started = at if step.started is None else step.started
            step.finished = None
        elif state in (DONE, FAILED):
            step.started = at if step.started is None else step.started
            step.finished = at if step.finished is None else step.finished
        if detail is not None:
            step.detail = detail
        changed = step.state != state
        step.state = state
        if state != RUNNING:
            step.waiting, step.waiting_since = "", None
        if changed:
            self._emit("step", dataclasses.replace(step))

    def _running(self) -> list[Step]:
        return [s for s in self._steps if s.state == RUNNING]

    def _begin(self, step: Step, at: float) -> None:
        """`step` starts; whatever else still runs has ended (done)."""
        for other in self._running():
            if other is not step:
                self._set(other, DONE, at)
        if step.state != RUNNING:
            self._set(step, RUNNING, at)

    def close(self, failed: bool = False) -> None:
        """The command is over: a step still running ended (failed when the command did);
        a step that never started was skipped."""
        with self._lock:
            if self.finished is not None:
                return
            now = self.clock()
            for step in self._steps:
                if step.state == RUNNING:
                    self._set(step, FAILED if failed else DONE, now)
            for step in self._steps:
                if step.state == PENDING:
                    self._set(step, SKIPPED, now)
            self.finished = now
        self._dispatch()

    # ---- the runner's callbacks ----------------------------------------------------------
    def __call__(self, message: str) -> None:
        """runner.ProgressCallback: a task the playbook names itself, or a line from the library."""
        raise NotImplementedError

    def observe_event(self, event: dict[str, Any]) -> None:
        """Every ansible-runner event of the runs this model is the progress callback of."""
        with self._lock:
            at = event_time(event, self.clock)
            if self.started is None:
                self.started = at
            data = event.get("event_data") or {}
            kind = event.get("event")
            if kind == "playbook_on_task_start":
                name = str(data.get("task") or "")
                self._last_task = name
                if name and not name.startswith(HIDDEN_TASKS):
                    self._emit("task", name)
            elif kind == "runner_on_ok" and data.get("task") == STAGED_TASK:
                files = (data.get("res") or {}).get("files") or []
                self.staged = sorted({PurePosixPath(str(f.get("path", ""))).name for f in files
                                      if isinstance(f, dict)} - {""})
            self._observe(kind or "", data, at)
        self._dispatch()

    def _observe(self, kind: str, data: dict[str, Any], at: float) -> None:
        raise NotImplementedError


class TaskSteps(Steps):
    """A step per task the playbook names itself: the existing progress(task_name) contract."""

    def __init__(self, title: str = "", clock: Callable[[], float] = time.time) -> None:
        super().__init__(title, clock)
        self._failed_step: Step | None = None
        self._failure = ""

    def __call__(self, message: str) -> None:
        with self._lock:
            at = self.clock()
            if self.started is None:
                self.started = at
            step = Step(key=f"task-{len(self._steps) + 1}", text=message)
            self._steps.append(step)
            self._begin(step, at)
        self._dispatch()

    def _observe(self, kind: str, data: dict[str, Any], at: float) -> None:
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            running = self._running()
            if running:
                # The last failure of a run is the one that ended it (earlier ones were rescued).
                self._failed_step = running[-1]
                res = data.get("res") or {}
                self._failure = _first_line(res.get("msg") or ("unreachable" if kind == "runner_on_unreachable"
                                                               else "failed"))
        elif kind == "playbook_on_stats":
            failed = any(int(count or 0) for counter in ("failures", "dark")
                         for count in (data.get(counter) or {}).values())
            for step in self._running():
                if failed and step is self._failed_step:
                    self._set(step, FAILED, at, self._failure)
                else:
                    self._set(step, DONE, at)
            self._failed_step, self._failure = None, ""


def rehearsal_expectations(rehearsal: dict[str, Any] | None) -> dict[str, float]:
    """What the last rehearsal measured, by release step."""
    expected: dict[str, float] = {}
    for key, field in (("rollback_point", "rollback_point_seconds"), ("migrate", "migration_seconds"),
                       ("backup", "backup_seconds")):
        try:
            expected[key] = float((rehearsal or {})[field])
        except (KeyError, TypeError, ValueError):
            continue
    return expected


class ReleaseSteps(Steps):
    """The steps of release.yml as the plan lists them (see the module's table)."""

    def __init__(self, planned: Sequence[tuple[str, str]] | None = None, *,
                 plan_steps: Callable[[dict[str, Any]], Sequence[tuple[str, str]]] | None = None,
                 expected: dict[str, float] | None = None, title: str = "release",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(title, clock)
        self._plan_steps = plan_steps
        self._expected = dict(expected or {})
        self._steps = [Step("preflight", PREFLIGHT_TEXT)]
        if planned:
            self._plan(planned)
        self._window_started: float | None = None
        # Journals seen before this run's window began are an earlier release's.
        self._stale_journals: set[Any] = set()
        self._journal_id: Any = None
        self._journal_updated = 0.0

    def _plan(self, planned: Sequence[tuple[str, str]]) -> None:
        self._steps[1:] = [Step(key, text, number, expected=self._expected.get(key))
                           for number, (key, text) in enumerate(planned, start=1)]

    @property
    def planned(self) -> int:
        return sum(1 for s in self._steps if s.number is not None)

    # ---- the runner's callbacks ----------------------------------------------------------
    def __call__(self, message: str) -> None:
        # A task's name arrives here right after its start event: shown with -v as a task
        # (observe_event). Anything else is the library speaking to the operator.
        with self._lock:
            if message != self._last_task:
                self._emit("note", message)
        self._dispatch()

    def _observe(self, kind: str, data: dict[str, Any], at: float) -> None:
        task = str(data.get("task") or "")
        preflight = self._steps[0]
        if preflight.state == PENDING:
            self._set(preflight, RUNNING, at)
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        if kind == "playbook_on_task_start":
            self._task_start(task, at)
        elif kind == "runner_on_ok":
            facts = res.get("ansible_facts") or {}
            if PLAN_FACT in facts and self.planned == 0 and self._plan_steps:
                try:
                    self._plan(self._plan_steps(facts[PLAN_FACT]))
                except (KeyError, TypeError, ValueError):
                    pass  # a plan this version cannot read: the run goes on with pre-flight only
            if facts.get(MARKS_FACT):
                mark = facts[MARKS_FACT][-1]
                self._mark(str(mark.get("step")), float(mark.get("at") or at))
            if isinstance(res.get("journal"), dict):
                self._merge_journal(res["journal"], at)
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            if isinstance(res.get("journal"), dict):
                self._merge_journal(res["journal"], at)
            if task.startswith(RERAISING_TASKS):
                return
            message = "unreachable: " if kind == "runner_on_unreachable" else ""
            message += _first_line(res.get("msg") or "failed")
            for step in self._running():
                self._set(step, FAILED, at, f"{task}: {message}" if task else message)
        elif kind == "playbook_on_stats":
            # The run is over: what ran until its end ended with it (a failure already failed its step).
            for step in self._running():
                self._set(step, DONE, at)

    def _task_start(self, task: str, at: float) -> None:
        lock = self.step("lock")
        if task == LOCK_TASK and lock is not None and lock.state == PENDING:
            self._begin(lock, at)
        elif task.startswith(WINDOW_TASK):
            self._window_started = at
            stop = self.step("stop")
            if stop is not None and stop.state == PENDING:
                self._begin(stop, at)
                stop.detail = WINDOW_DETAIL
        elif task.startswith(HEALTH_TASKS):
            start = self.step("start")
            if start is not None and start.state == RUNNING:
                start.waiting, start.waiting_since = "health gate", at

    def _mark(self, name: str, at: float) -> None:
        if name not in MARK_STEPS:
            return
        key = MARK_STEPS[name]
        if key is None:  # rollback_done
            rollback = self.step("rollback")
            if rollback is not None and rollback.state == RUNNING:
                self._set(rollback, DONE, at)
            return
        if key == "rollback" and self.step("rollback") is None:
            # Right after the last step that ran: the ones below it will not run.
            last = max((i for i, s in enumerate(self._steps) if s.state != PENDING), default=0)
            self._steps.insert(last + 1, Step("rollback", ROLLBACK_TEXT))
        step = self.step(key)
        if step is None:  # a step this release does not have (no broadcast): the running one ends
            for other in self._running():
                self._set(other, DONE, at)
        elif step.state in (PENDING, RUNNING):
            self._begin(step, at)

    # ---- the journal ---------------------------------------------------------------------
    def observe_journal(self, journal: dict[str, Any] | None) -> None:
        """A snapshot of deploy/journal.json read from the host while the run goes on."""
        if not isinstance(journal, dict) or not journal:
            return
        with self._lock:
            ident = journal.get("id")
            if self._window_started is None:
                self._stale_journals.add(ident)
                return
            if ident in self._stale_journals or (self._journal_id is not None and ident != self._journal_id):
                return
            if self._journal_id is None and journal.get("phase") == "done":
                return  # an earlier release's, read before this window wrote its own
            self._merge_journal(journal, self.clock())
        self._dispatch()

    def _merge_journal(self, journal: dict[str, Any], at: float) -> None:
        updated = float(journal.get("updated") or 0.0)
        if updated and updated < self._journal_updated:
            return  # older than what was merged already
        self._journal_updated = max(self._journal_updated, updated)
        if self._journal_id is None:
            self._journal_id = journal.get("id")
        for entry in journal.get("steps") or []:
            key = entry.get("step")
            step = self.step(key) if key in JOURNAL_STEPS else None
            state = JOURNAL_STATES.get(entry.get("state"))
            if step is None or state is None or (state == RUNNING and step.state in (DONE, FAILED, SKIPPED)):
                continue
            started = float(entry.get("started") or at)
            if step.detail == WINDOW_DETAIL:
                step.detail = ""
            if key != "start" or step.started is None:
                # Measured on the host. `start` keeps its own beginning: the guard before it.
                step.started = started
            if step.state not in (DONE, FAILED):
                self._begin(step, started)
            if state == RUNNING:
                if key == "start":
                    step.waiting, step.waiting_since = "health gate", started
                continue
            step.finished = float(entry["finished"]) if entry.get("finished") else None
            self._set(step, state, at, self._journal_detail(entry, state))

    @staticmethod
    def _journal_detail(entry: dict[str, Any], state: str) -> str:
        if state == FAILED:
            return _first_line(entry.get("error") or "failed")
        key = entry.get("step")
        if key == "migrate" and isinstance(entry.get("applied"), list):
            applied = len(entry["applied"])
            return f"{applied} revision{'s' if applied != 1 else ''} applied" + (
                f", at {entry['revision']}" if entry.get("revision") else "")
        if key == "start" and entry.get("health_seconds") is not None:
            return f"serving; health gate passed after {_short(float(entry['health_seconds']))}"
        if key == "fixtures" and entry.get("applied"):
            return "applied: " + ", ".join(map(str, entry["applied"]))
        return ""

    def downtime(self, now: float | None = None) -> float | None:
        """From ELLA's stop until it served again (the new version, or the previous one after
        a rollback); None before the stop."""
        with self._lock:
            stop = self.step("stop")
            if stop is None or stop.started is None:
                return None
            start, rollback = self.step("start"), self.step("rollback")
            end = None
            if start is not None and start.state == DONE:
                end = start.finished
            elif rollback is not None and rollback.state == DONE:
                end = rollback.finished
            if end is None:
                end = self.finished or (now if now is not None else self.clock())
            return max(0.0, end - stop.started)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            data = super().as_dict()
            downtime = self.downtime()
            data["downtime_seconds"] = None if downtime is None else round(downtime, 3)
            return data


def staged_versions(names: Iterable[str]) -> list[str]:
    """The versions of release files (ella-release-v1.2.3.sif) among file names."""
    from ella_deploy import versions

    found = {match.group(1) for name in names if (match := versions.RELEASE_FILE.match(name))}
    return sorted(found, key=versions.parse)


class JournalFollower:
    """Reads journal snapshots from `source` in a thread and hands them to the model.

    `source` is any iterable of journal dicts (None: no journal there) that may block between
    snapshots and has an optional `close()` that makes it end: remote.RemoteJournal over SSH
    in the CLI, a list in tests."""

    def __init__(self, source: Iterable[dict[str, Any] | None], model: ReleaseSteps) -> None:
        self.source = source
        self.model = model
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ella-journal-follower", daemon=True)
        self.error = ""

    def _run(self) -> None:
        try:
            for snapshot in self.source:
                if self._stopped.is_set():
                    break
                self.model.observe_journal(snapshot)
        except Exception as error:  # noqa: BLE001 - progress is a help; it never fails a release
            self.error = f"{error.__class__.__name__}: {error}"

    def start(self) -> JournalFollower:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
        self._thread.join(timeout)
