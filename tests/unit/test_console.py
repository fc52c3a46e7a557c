"""The progress display (plain lines for logs, live on a terminal) and colour in results."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from ella_deploy import console, progress, release

DATA = Path(__file__).parent / "data"
OPTIONS = release.ReleaseOptions(request="1.17.0")


def replay(name: str, model: progress.Steps, stop_at: int | None = None) -> None:
    for line in (DATA / f"{name}.jsonl").read_text().splitlines()[:stop_at]:
        model.observe_event(json.loads(line))


def release_model(**kwargs) -> progress.ReleaseSteps:
    return progress.ReleaseSteps(plan_steps=lambda plan: release.plan_steps(plan, OPTIONS),
                                 title="release 1.17.0 on sandbox", **kwargs)


LINE = re.compile(r"^\d\d:\d\d:\d\d  (?P<position>[ \d/]{5})  (?P<state>\S+) +(?P<seconds>[\dms.]*)  (?P<text>.+)$")


def test_plain_mode_is_a_line_when_a_step_starts_and_one_when_it_ends() -> None:
    model = release_model(expected={"migrate": 3.0})
    stream = io.StringIO()
    display = console.PlainDisplay(model, stream)
    replay("release_success", model)
    model.close()
    display.close()
    lines = stream.getvalue().splitlines()
    parsed = [LINE.match(line) for line in lines[:-1]]
    assert all(parsed), [line for line, match in zip(lines, parsed, strict=False) if not match]
    # Every step of the plan started and ended, in order, numbered as `release --check` shows them.
    assert [(m["position"].strip(), m["state"]) for m in parsed] == [
        ("", "started"), ("", "done"), *[(f"{n}/10", state) for n in range(1, 11) for state in ("started", "done")]]
    migrate = next(m for m in parsed if m["position"].strip() == "6/10" and m["state"] == "done")
    assert migrate["text"].startswith("migrate: ella-cli database upgrade head (1675e8d8b078 -> 92066141f180)")
    assert "(2 revisions applied, at 92066141f180; ~3.0s by the last rehearsal)" in migrate["text"]
    assert migrate["seconds"] == "3.1s"
    assert re.match(r"^\d\d:\d\d:\d\d  release 1.17.0 on sandbox: .+, downtime 18.8s$", lines[-1])
    # No Ansible task names without -v.
    assert "Mark the start of step" not in stream.getvalue() and "Renew the deploy lock" not in stream.getvalue()


def test_plain_mode_with_v_shows_the_task_names() -> None:
    model = release_model()
    stream = io.StringIO()
    console.PlainDisplay(model, stream, verbose=1)
    replay("release_success", model, stop_at=40)
    text = stream.getvalue()
    assert "task             Reach the host" in text
    assert "Validating arguments" not in text


def test_other_commands_keep_their_task_lines() -> None:
    model = progress.TaskSteps()
    stream = io.StringIO()
    console.PlainDisplay(model, stream)
    model("Find the reachable hosts")
    model("Stop ELLA under the deploy lock")
    model.close()
    assert stream.getvalue() == "  - Find the reachable hosts\n  - Stop ELLA under the deploy lock\n"


def render(model: progress.Steps, width: int = 120, verbose: int = 0) -> str:
    buffer = io.StringIO()
    terminal = Console(file=buffer, force_terminal=True, width=width, color_system=None)
    terminal.print(console.LiveDisplay(model, console=terminal, verbose=verbose).render())
    return buffer.getvalue()


def test_live_mode_shows_each_step_its_state_and_time() -> None:
    events = [json.loads(line) for line in (DATA / "release_success.jsonl").read_text().splitlines()]
    # Stop the replay while the start's health gate waits.
    gate = next(i for i, e in enumerate(events) if e["event"] == "playbook_on_task_start"
                and e["event_data"]["task"] == "Start ELLA and wait until it serves")
    started = progress.event_time(events[gate], lambda: 0.0)
    model = release_model(expected={"migrate": 40.0}, clock=lambda: started + 3.0)
    for event in events[:gate + 1]:
        model.observe_event(event)
    screen = render(model)
    rows = screen.splitlines()
    assert rows[0].startswith("release 1.17.0 on sandbox") and "downtime" in rows[0]
    assert re.search(r"✓\s+6/10\s+3\.1s migrate: ella-cli database upgrade head .*2 revisions applied", screen)
    start_row = next(i for i, row in enumerate(rows) if "7/10" in row)
    assert not rows[start_row].lstrip().startswith(("✓", "·"))  # the spinner
    assert "↳ health gate 3.0s" in rows[start_row + 1]
    assert re.search(r"·\s+8/10\s+post the acceptance-test broadcast", screen)
    assert "Mark the start of step" not in screen


def test_live_mode_with_v_prints_task_names_above_the_steps() -> None:
    model = release_model()
    buffer = io.StringIO()
    terminal = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    display = console.LiveDisplay(model, console=terminal, verbose=1)
    replay("release_success", model, stop_at=10)
    display.close()
    assert "    Reach the host" in buffer.getvalue()


def test_live_mode_has_colour_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    model = release_model()
    replay("release_success", model, stop_at=250)
    monkeypatch.delenv("NO_COLOR", raising=False)
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=100).print(console.LiveDisplay(model).render())
    assert "\x1b[32m✓" in buffer.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=100).print(console.LiveDisplay(model).render())
    assert "\x1b[3" not in buffer.getvalue() and "✓" in buffer.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


CHECK = """ELLA prod check at 2026-11-30 08:00:00 UTC: CRIT
OK    load           p22-ella-01  0.2 per core  (warn 1, crit 2)
WARN  disk free      p22-ella-01  12%           (warn 15, crit 5)
CRIT  5xx rate                    7%            (warn 1, crit 5)  OK is no word here"""

STATUS = """prod: ONE ACTIVE on p22-ella-01

HOST            REACHABLE  SUPERVISORD  ELLA     UPTIME   SYMLINK  RUNNING  DB  ROLE
p22-ella-01     yes        up           RUNNING  0:00:23  2.0.0    2.0.0    3   primary, active
p22-ella-fo-01  NO         ?            ?        -        -        -        ?   standby
! p22-ella-fo-01: unreachable"""


@pytest.mark.parametrize("text,kind", [(CHECK, "check"), (STATUS, "status")])
def test_results_are_coloured_on_a_terminal_with_the_same_characters(text: str, kind: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    stream = Terminal()
    console.print_result(text, kind, stream)
    coloured = stream.getvalue()
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == text + "\n"


def test_the_states_that_are_coloured() -> None:
    check = console.coloured(CHECK, "check")
    styled = {CHECK[span.start:span.end]: str(span.style) for span in check.spans}
    assert styled == {"CRIT": "bold red", "OK": "green", "WARN": "yellow"}
    assert [CHECK[s.start:s.end] for s in check.spans].count("OK") == 1  # not the "OK" in a detail
    status = console.coloured(STATUS, "status")
    styled = [(STATUS[span.start:span.end], str(span.style)) for span in status.spans]
    assert ("ONE ACTIVE", "bold green") in styled and ("RUNNING", "green") in styled and ("NO", "bold red") in styled
    assert ("! p22-ella-fo-01: unreachable", "yellow") in styled


@pytest.mark.parametrize("environment", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_colour_when_asked_or_not_possible(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    stream = Terminal()
    console.print_result(CHECK, "check", stream)
    assert stream.getvalue() == CHECK + "\n"


def test_no_colour_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = io.StringIO()
    console.print_result(CHECK, "check", stream)
    assert stream.getvalue() == CHECK + "\n"
