"""`ella-deploy release` with its progress by step, in-process: release.execute is replaced by a
replay of a recorded sandbox release fed to the command's own progress model, so the CLI's
wiring (display, journal reader, JSON) is what is tested and no host is touched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ella_deploy import cli, completion, paths, release, remote
from ella_deploy.errors import EllaDeployError, ExitCode

DATA = Path(__file__).parent / "data"


@pytest.fixture
def replayed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(release, "staging_verified", lambda inventory, skip, progress=None: (None, ""))
    connected: list[str] = []

    def no_host(inventory: Path, host: str | None, command: str) -> remote.Connection:
        connected.append(command)
        raise EllaDeployError(f"{command}: no ELLA host of the inventory answers", ExitCode.FAILED)

    monkeypatch.setattr(remote, "connect", no_host)

    def execute(inventory, options, version, command, progress=None) -> release.ReleaseOutcome:
        for line in (DATA / "release_success.jsonl").read_text().splitlines():
            event = json.loads(line)
            progress.observe_event(event)
            data = event["event_data"]
            # What runner.run_playbook also tells the callback: the playbook's own task names.
            if event["event"] == "playbook_on_task_start" and data["task_path"].startswith("ansible/playbooks") \
                    and not data["task"].startswith("Validating"):
                progress(data["task"])
        progress("Interrupted: nothing, this is a test")  # the library speaking: a line
        return release.ReleaseOutcome(plan={"version": version}, record={
            "outcome": "success", "from_version": "1.16.5", "to_version": "1.17.0", "environment": "sandbox",
            "host": "p22-ella-01", "downtime_seconds": 18.8, "steps": []})

    monkeypatch.setattr(release, "execute", execute)
    monkeypatch.setattr(cli, "_change_record", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "_test_sheet", lambda *args, **kwargs: None)
    return connected


def test_json_keeps_the_steps_and_their_timings(replayed: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["release", "1.17.0", "--yes", "--output", "json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    steps = summary["progress"]["steps"]
    assert [s["key"] for s in steps] == ["preflight", "lock", "configure", "stop", "rollback_point", "switch",
                                         "migrate", "start", "broadcast", "backup", "record"]
    assert all(s["state"] == "done" and s["seconds"] is not None for s in steps)
    assert steps[6]["detail"] == "2 revisions applied, at 92066141f180"
    assert summary["progress"]["downtime_seconds"] == pytest.approx(18.76, abs=0.01)
    assert err == "" and replayed == []  # no live reader without a display
    # What the run listed in archive/releases is there for completion.
    assert completion.cached_versions(paths.INVENTORY_DIR / "sandbox") == ["1.16.5", "1.17.0", "1.17.1", "1.17.2"]


def test_plain_lines_on_stderr_when_not_on_a_terminal(replayed: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["release", "1.17.0", "--yes", "-i", "sandbox"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert replayed == ["release"]
    assert "the host's journal is not followed live (release: no ELLA host of the inventory answers)" in lines[0]
    steps = [line for line in lines if re.match(r"^\d\d:\d\d:\d\d +(\d+/10)? +(started|done)", line)]
    assert len(steps) == 22
    assert re.search(r"  6/10  done +3\.1s  migrate: .*\(2 revisions applied, at 92066141f180\)$", err, re.MULTILINE)
    assert re.search(r"release 1\.17\.0 on sandbox: .*, downtime 18\.8s$", lines[-1])
    assert "Choose the host" not in err and "Mark the start" not in err
    assert "  Interrupted: nothing, this is a test" in err
    assert out.startswith("release 1.16.5 -> 1.17.0 on sandbox (p22-ella-01): SUCCESS")


def test_with_v_the_task_names_are_there_too(replayed: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["release", "1.17.0", "--yes", "-v"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"task +Mark the start of step migrate|task +Run the window on the host", err)
