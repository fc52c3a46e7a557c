"""The command line as an operator meets it: one clear line on bad input, a fast --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ella_deploy import cli
from ella_deploy.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]


def ella_deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ella_deploy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        [],
        ["--inventory", "no-such-inventory", "status"],
        ["--inventory", "/no/such/path", "status"],
        ["sandbox"],
        ["sandbox", "frobnicate"],
        ["--output", "xml", "status"],
        ["status", "--no-such-option"],
        ["release"],
    ],
    ids=[
        "unknown-command",
        "no-command",
        "unknown-inventory",
        "missing-inventory-path",
        "missing-sandbox-action",
        "unknown-sandbox-action",
        "bad-output-format",
        "unknown-option",
        "release-without-version",
    ],
)
def test_bad_input_is_one_line_and_the_usage_exit_code(args: list[str]) -> None:
    result = ella_deploy(*args)
    details = f"exit {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.returncode == ExitCode.USAGE, details
    assert result.stdout == "", details
    assert "Traceback" not in result.stderr, details
    lines = result.stderr.splitlines()
    assert len(lines) == 1, details
    assert lines[0].startswith("ella-deploy: "), details


def test_unknown_inventory_names_the_known_ones() -> None:
    line = ella_deploy("--inventory", "no-such-inventory", "status").stderr.strip()
    assert "'no-such-inventory'" in line
    for known in ("prod", "sandbox", "staging"):
        assert known in line


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["sandbox", "--help"], ["sandbox", "down", "--help"]])
def test_help_exits_zero(args: list[str]) -> None:
    result = ella_deploy(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ella-deploy")
    assert result.stderr == ""


def test_help_does_not_import_ansible() -> None:
    probe = (
        "import sys\n"
        "from ella_deploy import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "loaded = sorted(name for name in sys.modules\n"
        "                if name.split('.')[0] in ('ansible', 'ansible_runner'))\n"
        "print('LOADED:', ','.join(loaded), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED: \n" in result.stderr, result.stderr


def test_debug_shows_the_traceback() -> None:
    result = ella_deploy("--debug", "--inventory", "no-such-inventory", "status")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "EllaDeployError: unknown inventory 'no-such-inventory'" in result.stderr


# ---- Global options where people put them --------------------------------------------------

HARNESS = [sys.executable, "-m", "tests.unit.cli_harness"]


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """ella-deploy with no playbook ever run: the stand-in for ansible-runner exits 99 naming it."""
    import os

    return subprocess.run([*HARNESS, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("args", [
    ["check", "--output", "nagios"],
    ["check", "--output=nagios", "-i", "sandbox"],
    ["--inventory", "staging", "check", "--output", "nagios", "--inventory", "sandbox"],
    ["check", "-v", "--debug", "--output", "nagios"],
])
def test_global_options_after_the_command(args: list[str]) -> None:
    done = harness(*args)
    assert done.returncode == 99, done.stderr
    assert done.stderr.endswith("PLAYBOOK REACHED check.yml\n")


def test_the_option_after_the_command_wins_and_the_one_before_stays_otherwise() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["-i", "prod", "--output", "json", "release", "2.1.0", "--yes", "-i", "staging"])
    assert (args.inventory, args.output, args.yes) == ("staging", "json", True)
    args = parser.parse_args(["-i", "prod", "broadcast", "new", "Nedetid", "-v"])
    assert (args.inventory, args.output) == ("prod", "text")
    args = parser.parse_args(["-v", "sandbox", "-vv", "reset", "-v", "--vault-password-file", "/x"])
    assert sum(getattr(args, dest, 0) for dest in cli.VERBOSITY_DESTS) == 4
    assert args.vault_password_file == "/x"


@pytest.mark.parametrize("args,message", [
    (["status", "--output", "xml"], "ella-deploy: status: argument --output: invalid choice: 'xml'"),
    (["status", "-i", "no-such-inventory"], "ella-deploy: unknown inventory 'no-such-inventory'"),
    (["release", "2.1.0", "--inventory", "/no/such/path"], "ella-deploy: unknown inventory '/no/such/path'"),
    (["status", "--output", "nagios"], "ella-deploy: status: --output nagios is for check only"),
    (["broadcast", "list", "--vault-password-file", "/no/such/file"], "ella-deploy: no vault password file"),
    (["sandbox", "reset", "--inventory"], "ella-deploy: sandbox reset: argument -i/--inventory: expected one argument"),
])
def test_global_options_after_the_command_are_checked_as_before_it(args: list[str], message: str) -> None:
    done = ella_deploy(*args)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stderr.startswith(message) and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_a_closed_pipe_ends_quietly_with_141() -> None:
    import os

    pipeline = (f"{' '.join(HARNESS)} status | head -1; echo \"exit ${{PIPESTATUS[0]}}\" >&2")
    done = subprocess.run(["bash", "-c", pipeline], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_STATUS_LINES": "200000"})
    assert done.stdout == "line 0 of the status\n"
    assert done.stderr == "exit 141\n"


def test_a_reader_that_reads_everything_changes_nothing() -> None:
    import os

    pipeline = f"{' '.join(HARNESS)} status | tail -1; echo \"exit ${{PIPESTATUS[0]}}\" >&2"
    done = subprocess.run(["bash", "-c", pipeline], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_STATUS_LINES": "5000"})
    assert (done.stdout, done.stderr) == ("line 4999 of the status\n", "exit 0\n")
