"""The command line as an operator meets it: one clear line on bad input, a fast --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
