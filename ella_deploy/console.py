"""What the operator sees while a command runs (stderr), and colour in its results (stdout).

Progress is a model from progress.py shown one of two ways:
- on a terminal (stdout and stderr both, TERM not `dumb`): live, with rich - each step with
  its state and elapsed time, redrawn in place;
- anywhere else (CI, AWX, a pipe): plain lines, one when a step starts and one when it ends
  (a step that hangs shows in a log as started and not ended), with the time of day.
Ansible's task names only with -v. `--output json` shows no progress (the JSON has it).

Colour only where stdout is a terminal and NO_COLOR is not set (https://no-color.org).
rich is imported only when something is shown, so `ella-deploy --help` stays fast.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import IO, Any

from ella_deploy import progress as steps_model

# The CLI's -v count: Ansible task names are shown from 1 on.
VERBOSITY = 0

STATE_WORDS = {steps_model.PENDING: "pending", steps_model.RUNNING: "started", steps_model.DONE: "done",
               steps_model.FAILED: "FAILED", steps_model.SKIPPED: "skipped"}


def interactive() -> bool:
    """Live progress: both streams are a terminal that can redraw."""
    return sys.stderr.isatty() and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def colour_wanted(stream: IO[str]) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def short(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def position(step: steps_model.Step, total: int) -> str:
    return f"{step.number}/{total}" if step.number is not None else ""


def step_detail(step: steps_model.Step, now: float) -> str:
    """What a step says beyond its state: the host's result, what it waits for, the rehearsal's time."""
    parts = [step.detail] if step.detail else []
    if step.state == steps_model.RUNNING and step.waiting and step.waiting_since is not None:
        parts.append(f"{step.waiting} {short(max(0.0, now - step.waiting_since))}")
    if step.expected is not None and step.state in (steps_model.RUNNING, steps_model.DONE):
        parts.append(f"~{short(step.expected)} by the last rehearsal")
    return "; ".join(parts)


def _clock(moment: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment if moment is not None else time.time()))


class PlainDisplay:
    """One line per change, for logs. A TaskSteps model keeps the short `  - task` lines."""

    def __init__(self, model: steps_model.Steps, stream: IO[str] | None = None, verbose: int = 0) -> None:
        self.model = model
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.numbered = isinstance(model, steps_model.ReleaseSteps)
        self._last_task = ""
        model.subscribe(self.on_change)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def on_change(self, kind: str, payload: Any) -> None:
        if kind == "note":
            self._write(f"  {payload}" if not self.numbered else f"{_clock(None)}  {payload}")
        elif kind == "task":
            self._last_task = payload
            if self.verbose:
                self._write(f"  - {payload}" if not self.numbered else f"{_clock(None)}  {'':>5}  task    "
                                                                         f"{'':>7}  {payload}")
        elif kind == "step":
            self._step(payload)

    def _step(self, step: steps_model.Step) -> None:
        if not self.numbered:
            # The steps of other commands are the tasks their playbook names: as before, a line each.
            if step.state == steps_model.RUNNING and not (self.verbose and step.text == self._last_task):
                self._write(f"  - {step.text}")
            return
        total = self.model.planned  # type: ignore[attr-defined]
        moment = step.finished if step.state in (steps_model.DONE, steps_model.FAILED) else step.started
        seconds = step.seconds(moment or 0.0) if step.state in (steps_model.DONE, steps_model.FAILED) else None
        detail = step_detail(step, moment or time.time()) if step.state != steps_model.RUNNING else ""
        if step.state == steps_model.RUNNING and step.expected is not None:
            detail = f"~{short(step.expected)} by the last rehearsal"
        self._write(f"{_clock(moment)}  {position(step, total):>5}  {STATE_WORDS[step.state]:<7} "
                    f"{short(seconds):>7}  {step.text}" + (f"  ({detail})" if detail else ""))

    def close(self) -> None:
        if self.numbered:
            downtime = self.model.downtime()  # type: ignore[attr-defined]
            total = self.model.as_dict()["seconds"]
            self._write(f"{_clock(self.model.finished)}  {self.model.title}: {short(total)}"
                        + (f", downtime {short(downtime)}" if downtime is not None else ""))


class LiveDisplay:
    """The steps redrawn in place on the terminal (rich.live), on stderr."""

    def __init__(self, model: steps_model.Steps, console: Any = None, verbose: int = 0) -> None:
        from rich.console import Console
        from rich.spinner import Spinner

        self.model = model
        self.console = console or Console(stderr=True, highlight=False)
        self.verbose = verbose
        self.numbered = isinstance(model, steps_model.ReleaseSteps)
        self.spinner = Spinner("dots", style="cyan")
        self.live: Any = None
        model.subscribe(self.on_change)

    def start(self) -> None:
        if self.live is None:
            from rich.live import Live

            self.live = Live(get_renderable=self.render, console=self.console, refresh_per_second=8,
                             transient=False, redirect_stdout=False, redirect_stderr=False)
            self.live.start()

    def on_change(self, kind: str, payload: Any) -> None:
        from rich.text import Text

        if kind == "note":
            self.start()
            self.console.print(Text(str(payload)), soft_wrap=True)
        elif kind == "task" and self.verbose:
            self.start()
            self.console.print(Text(f"    {payload}", style="dim"), soft_wrap=True)
        elif kind == "step":
            self.start()

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        now = self.model.clock()
        steps = self.model.snapshot()
        total = sum(1 for s in steps if s.number is not None)
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(width=1, no_wrap=True)
        table.add_column(justify="right", width=5, no_wrap=True)
        table.add_column(justify="right", width=7, no_wrap=True)
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        icons = {steps_model.DONE: Text("✓", style="green"), steps_model.FAILED: Text("✗", style="bold red"),
                 steps_model.SKIPPED: Text("-", style="dim"), steps_model.PENDING: Text("·", style="dim")}
        for step in steps:
            icon = self.spinner if step.state == steps_model.RUNNING else icons[step.state]
            style = {steps_model.PENDING: "dim", steps_model.SKIPPED: "dim", steps_model.FAILED: "red"}.get(step.state, "")
            line = Text(step.text, style=style)
            detail = step_detail(step, now)
            below = step.state in (steps_model.RUNNING, steps_model.FAILED)
            if detail and not below:
                line.append(f"  {detail}", style="cyan")
            table.add_row(icon, Text(position(step, total), style="dim"),
                          Text(short(step.seconds(now)), style="bold" if step.state == steps_model.RUNNING else ""),
                          line)
            if detail and below:
                # What a running or failed step says matters more than the rest of its line.
                table.add_row("", "", "", Text(f"↳ {detail}", style="red" if step.state == steps_model.FAILED
                                               else "cyan"))
        if not self.numbered:
            return table
        data = self.model.as_dict()
        header = Text(f"{self.model.title}", style="bold")
        if data["seconds"] is not None:
            header.append(f"  {short(data['seconds'])}")
        downtime = self.model.downtime(now)  # type: ignore[attr-defined]
        if downtime is not None:
            header.append(f"  downtime {short(downtime)}", style="yellow")
        outer = Table.grid()
        outer.add_row(header)
        outer.add_row(table)
        return outer

    def close(self) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
            self.live = None


# Displays open in this process: at most one at a time (one terminal, one live region).
_OPEN: list[tuple[steps_model.Steps, Any]] = []


def show(model: steps_model.Steps, output: str) -> Any:
    """Show `model` on stderr while the command runs; None (nothing shown) for --output json."""
    close_all()
    if output != "text":
        return None
    display: Any
    if interactive():
        display = LiveDisplay(model, verbose=VERBOSITY)
        if isinstance(model, steps_model.ReleaseSteps):
            display.start()
    else:
        display = PlainDisplay(model, verbose=VERBOSITY)
    _OPEN.append((model, display))
    return display


def task_progress(output: str) -> steps_model.TaskSteps | None:
    """The progress callback of a command (runner.ProgressCallback): its playbook's named tasks as steps."""
    if output != "text":
        return None
    model = steps_model.TaskSteps()
    show(model, output)
    return model


def close_all(failed: bool = False) -> None:
    """End what is shown (before the command prints its result, asks, or fails)."""
    while _OPEN:
        model, display = _OPEN.pop()
        model.close(failed)
        display.close()


# ---- Colour in results --------------------------------------------------------------------

_CHECK_STYLES = {"OK": "green", "WARN": "yellow", "CRIT": "bold red", "UNKNOWN": "magenta"}
_CHECK_STATE = re.compile(r"^(OK|WARN|CRIT|UNKNOWN)\b|: (OK|WARN|CRIT|UNKNOWN)$", re.MULTILINE)
_STATUS_VERDICT = re.compile(r"\A\S+: (ONE ACTIVE|NONE ACTIVE|CONFLICT|UNKNOWN)")
_STATUS_VERDICT_STYLES = {"ONE ACTIVE": "bold green", "NONE ACTIVE": "bold red", "CONFLICT": "bold red",
                          "UNKNOWN": "bold red"}
_STATUS_WORDS = re.compile(r"(?<![\w-])(RUNNING|NO|STRAY|FATAL|BACKOFF|EXITED|STARTING|down)(?![\w-])")
_STATUS_WORD_STYLES = {"RUNNING": "green", "STARTING": "yellow"}


def coloured(text: str, kind: str) -> Any:
    """`text` of `check` or `status` as rich Text, its states coloured (the same characters)."""
    from rich.text import Text

    rich_text = Text(text)
    if kind == "check":
        for match in _CHECK_STATE.finditer(text):
            group = 1 if match.group(1) else 2
            rich_text.stylize(_CHECK_STYLES[match.group(group)], match.start(group), match.end(group))
    elif kind == "status":
        verdict = _STATUS_VERDICT.match(text)
        if verdict:
            rich_text.stylize(_STATUS_VERDICT_STYLES[verdict.group(1)], verdict.start(1), verdict.end(1))
        offset = 0
        for line in text.splitlines(keepends=True):
            if line.startswith("! "):
                rich_text.stylize("yellow", offset, offset + len(line.rstrip("\n")))
            elif offset:  # the table, not the headline
                for match in _STATUS_WORDS.finditer(line):
                    rich_text.stylize(_STATUS_WORD_STYLES.get(match.group(1), "bold red"),
                                      offset + match.start(1), offset + match.end(1))
            offset += len(line)
    return rich_text


def print_result(text: str, kind: str | None = None, stream: IO[str] | None = None) -> None:
    """A command's result on stdout; `check` and `status` coloured on a terminal."""
    stream = stream or sys.stdout
    if kind is None or not colour_wanted(stream):
        print(text, file=stream)
        return
    from rich.console import Console

    Console(file=stream, highlight=False, soft_wrap=True).print(coloured(text, kind))
