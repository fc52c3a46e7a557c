"""The confirmation before every command that stops or moves ELLA or writes to its database:
asked on a terminal (pseudo-terminal here), refused without one unless --yes, never asked on
the sandbox. No playbook runs: tests.unit.cli_harness stands in for ansible-runner and says
which playbook the command reached (exit 99), i.e. that it got past the confirmation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from ella_deploy import confirm, paths, release
from ella_deploy.errors import EllaDeployError, ExitCode
from tests.unit.test_dbtask import isolated_git, repository, sign_off  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "tests.unit.cli_harness"]
REACHED = 99

# (command line, the playbook it runs once confirmed, words of its question)
COMMANDS = [
    (["stop"], "stop.yml", "Stop ELLA on every host of labprod (lab-ella-01, lab-ella-fo-01)?"),
    (["stop", "--host", "lab-ella-fo-01"], "stop.yml", "Stop ELLA on lab-ella-fo-01?"),
    (["start"], "start.yml", "Start ELLA on lab-ella-01 (labprod)?"),
    (["restart", "--host", "lab-ella-fo-01"], "stop.yml", "Restart ELLA on lab-ella-fo-01 (labprod)?"),
    (["failover"], "failover.yml", "Move ELLA to the other host (labprod)?"),
    (["failover", "--to", "lab-ella-fo-01"], "failover.yml", "Move ELLA to lab-ella-fo-01 (labprod)?"),
    (["failback"], "failover.yml", "Move ELLA back to lab-ella-01 (labprod)?"),
    (["recover"], "recover.yml", "Recover the interrupted release on labprod?"),
    (["cli", "--", "users", "add_groups", "/tmp/groups.json"], "cli.yml",
     "Run `ella-cli users add_groups /tmp/groups.json` on labprod?"),
    (["broadcast", "new", "Nedetid fredag 16-18"], "cli.yml", "Post this broadcast to every user of labprod?"),
    (["broadcast", "deactivate", "3"], "cli.yml", "Take broadcast 3 down on labprod?"),
]
IDS = ["stop", "stop-host", "start", "restart", "failover", "failover-to", "failback", "recover", "cli-write",
       "broadcast-new", "broadcast-deactivate"]


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """An inventory outside the sandbox (its hosts are never contacted: no playbook runs)."""
    inventory = tmp_path / "labprod"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  children:\n    ella_hosts:\n      hosts:\n"
                                         "        lab-ella-01:\n          ansible_host: 127.0.0.1\n"
                                         "        lab-ella-fo-01:\n          ansible_host: 127.0.0.1\n")
    (inventory / "group_vars" / "all" / "site.yml").write_text("ella_environment: labprod\n"
                                                               "ella_primary_host: lab-ella-01\n")
    return inventory


def environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "ELLA_DEPLOY_STATE_DIR": str(tmp_path / "state"),
            "NO_COLOR": "1"}


def without_terminal(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=environment(tmp_path), timeout=60, check=False)


def on_terminal(tmp_path: Path, *args: str) -> pexpect.spawn:
    return pexpect.spawn(HARNESS[0], [*HARNESS[1:], *args], cwd=str(ROOT), env=environment(tmp_path),
                         encoding="utf-8", timeout=30, dimensions=(40, 200))


def finished(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before


@pytest.mark.parametrize("args,playbook,question", COMMANDS, ids=IDS)
def test_without_a_terminal_it_is_refused_in_one_line(lab: Path, tmp_path: Path, args, playbook, question) -> None:
    done = without_terminal(tmp_path, "-i", str(lab), *args)
    assert done.returncode == ExitCode.REFUSED, done.stderr
    command = args[0]
    assert done.stderr == (f"ella-deploy: {command}: no terminal to confirm on; pass --yes to {command} "
                           "without asking\n")
    assert done.stdout == ""


@pytest.mark.parametrize("args,playbook,question", COMMANDS, ids=IDS)
def test_with_yes_it_goes_on_without_asking(lab: Path, tmp_path: Path, args, playbook, question) -> None:
    # --yes where people put it: after the command's own options (before `--` for cli).
    where = args.index("--") if "--" in args else len(args)
    done = without_terminal(tmp_path, *args[:where], "--yes", *args[where:], "--inventory", str(lab)) \
        if "--" not in args else without_terminal(tmp_path, "-i", str(lab), *args[:where], "--yes", *args[where:])
    assert done.returncode == REACHED, done.stderr
    assert f"PLAYBOOK REACHED {playbook}" in done.stderr
    assert "Type the environment name" not in done.stderr


@pytest.mark.parametrize("args,playbook,question", COMMANDS, ids=IDS)
def test_on_a_terminal_it_says_what_happens_and_asks_for_the_name(lab: Path, tmp_path: Path, args, playbook,
                                                                   question) -> None:
    child = on_terminal(tmp_path, "-i", str(lab), *args)
    child.expect_exact("Type the environment name to go on: ")
    shown = child.before
    assert question in shown
    assert "labprod" in shown.splitlines()[0]
    child.sendline("labprod")
    code, rest = finished(child)
    assert code == REACHED, rest
    assert f"PLAYBOOK REACHED {playbook}" in rest


@pytest.mark.parametrize("answer", ["", "prod", "LABPROD", "yes"])
def test_anything_but_the_name_changes_nothing(lab: Path, tmp_path: Path, answer: str) -> None:
    child = on_terminal(tmp_path, "-i", str(lab), "failover")
    child.expect_exact("Type the environment name to go on: ")
    child.sendline(answer)
    code, rest = finished(child)
    assert code == ExitCode.REFUSED
    assert "ella-deploy: failover: not confirmed; nothing was changed" in rest
    assert "PLAYBOOK REACHED" not in rest


def test_end_of_input_at_the_question_changes_nothing(lab: Path, tmp_path: Path) -> None:
    child = on_terminal(tmp_path, "-i", str(lab), "stop")
    child.expect_exact("Type the environment name to go on: ")
    child.sendeof()
    code, rest = finished(child)
    assert code == ExitCode.REFUSED
    assert "not confirmed; nothing was changed" in rest


@pytest.mark.parametrize("inventory", ["sandbox", "sandbox-staging"])
def test_the_sandbox_is_never_asked_about(tmp_path: Path, inventory: str) -> None:
    done = without_terminal(tmp_path, "stop", "-i", inventory)
    assert done.returncode == REACHED, done.stderr
    assert "PLAYBOOK REACHED stop.yml" in done.stderr


@pytest.mark.parametrize("args", [["cli", "--", "broadcast", "list"], ["cli", "--", "database", "current"],
                                  ["broadcast", "list"]])
def test_commands_that_only_read_are_not_asked_about(lab: Path, tmp_path: Path, args: list[str]) -> None:
    done = without_terminal(tmp_path, "-i", str(lab), *args)
    assert done.returncode == REACHED, done.stderr


def test_bad_input_is_refused_before_the_question(lab: Path, tmp_path: Path) -> None:
    done = without_terminal(tmp_path, "-i", str(lab), "stop", "--host", "no-such-host")
    assert done.returncode == ExitCode.USAGE
    assert "'no-such-host' is not an ELLA host of this inventory" in done.stderr
    done = without_terminal(tmp_path, "-i", str(lab), "cli", "--", "database", "upgrade", "head")
    assert done.returncode == ExitCode.USAGE


def test_db_task_commit_is_asked_about_after_its_review(lab: Path, tmp_path: Path, isolated_git) -> None:  # noqa: F811
    repo, script = repository(isolated_git)
    child = on_terminal(tmp_path, "-i", str(lab), "db-task", str(script), "--commit")
    code, rest = finished(child)
    assert code == ExitCode.REFUSED and "Reviewed-by" in rest and "Type the environment" not in rest
    sign_off(repo)
    child = on_terminal(tmp_path, "-i", str(lab), "db-task", str(script), "--commit")
    child.expect_exact("Type the environment name to go on: ")
    assert "Commit 20261125_fix_genepanel/fix.sql to labprod's database?" in child.before
    assert "1 statement, reviewed by Kari Nordmann <Kari@OUS-HF.no>" in child.before
    child.sendline("labprod")
    code, rest = finished(child)
    assert code == REACHED and "PLAYBOOK REACHED db_task.yml" in rest
    # A dry run writes nothing: not asked.
    done = without_terminal(tmp_path, "-i", str(lab), "db-task", str(script))
    assert done.returncode == REACHED, done.stderr
    done = without_terminal(tmp_path, "-i", str(lab), "db-task", str(script), "--commit")
    assert done.returncode == ExitCode.REFUSED and "pass --yes to db-task" in done.stderr


def test_release_asks_through_the_same_helper(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    the_plan = {"version": "2.1.0", "environment": "labprod"}
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    asked: list[str] = []
    release.confirm(the_plan, lab, ask=lambda question: asked.append(question) or "labprod")
    assert asked == ["Release ELLA 2.1.0 on labprod? Type the environment name to go on: "]
    with pytest.raises(EllaDeployError) as refused:
        release.confirm(the_plan, lab, ask=lambda question: "no")
    assert (refused.value.message, refused.value.exit_code) == ("release: not confirmed; nothing was changed",
                                                                ExitCode.REFUSED)
    release.confirm({"version": "2.1.0", "environment": "sandbox"}, paths.INVENTORY_DIR / "sandbox",
                    ask=lambda question: pytest.fail("the sandbox is not asked about"))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(EllaDeployError) as refused:
        release.confirm(the_plan, lab)
    assert refused.value.message == "release: no terminal to confirm on; pass --yes to release without asking"


def test_the_environment_name_is_the_inventorys_own(lab: Path, tmp_path: Path) -> None:
    assert confirm.environment_name(paths.INVENTORY_DIR / "prod") == "prod"
    assert confirm.environment_name(lab) == "labprod"
    bare = tmp_path / "elsewhere"
    bare.mkdir()
    (bare / "hosts.yml").write_text("all: {}\n")
    assert confirm.environment_name(bare) == "elsewhere"
    assert confirm.is_sandbox(paths.INVENTORY_DIR / "sandbox-staging")
    assert not confirm.is_sandbox(paths.INVENTORY_DIR / "staging") and not confirm.is_sandbox(lab)


def test_the_question_goes_to_stderr_and_stdout_stays_the_results(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    child = pexpect.spawn("/bin/sh", ["-c", f"{' '.join(HARNESS)} -i {lab} stop > {out}"], cwd=str(ROOT),
                          env=environment(tmp_path), encoding="utf-8", timeout=30)
    child.expect_exact("Type the environment name to go on: ")
    child.sendline("nope")
    code, _rest = finished(child)
    assert code == ExitCode.REFUSED
    assert out.read_text() == ""
