"""Shell completion: the candidates, the bash and zsh scripts, the staged-versions cache; fast,
and never a host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ella_deploy import cli, completion, paths

ROOT = Path(__file__).resolve().parents[2]


def candidates(line: str) -> list[str]:
    """The candidates for the last word of `line` (a trailing space: a new, empty word)."""
    words = line.split(" ")
    return completion.candidates(words, len(words) - 1, cli.build_parser())


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_commands_options_and_choices() -> None:
    assert "release" in candidates("") and "completion" in candidates("") and "__complete" not in candidates("")
    assert candidates("st") == ["status", "stage", "start", "stop"]
    assert candidates("broadcast ") == ["new", "list", "deactivate"]
    assert candidates("sandbox reset ") == ["sandbox", "sandbox-staging"]
    assert candidates("logs --program w") == ["watcher"]
    assert candidates("--output ") == ["text", "json", "nagios"]
    assert candidates("check --output n") == ["nagios"]
    assert candidates("completion ") == ["bash", "zsh", "versions"]
    # The global options are offered after the command too, beside its own.
    options = candidates("stop --")
    assert {"--inventory", "--output", "--verbose", "--host", "--all", "--yes", "--break-lock"} <= set(options)
    assert candidates("cli -- users ") == []  # ella-cli's own arguments


def test_inventories_and_the_hosts_of_the_one_on_the_line() -> None:
    assert candidates("-i ") == [*paths.known_inventories(), completion.FILES]
    assert candidates("-i pr") == ["prod", completion.FILES]
    assert candidates("-i prod start --host ") == ["p22-ella-01", "p22-ella-fo-01"]
    assert candidates("failover --inventory staging --to ") == paths.inventory_hosts(paths.INVENTORY_DIR / "staging")
    assert candidates("start --peer-fenced p22-ella-f") == ["p22-ella-fo-01"]  # the sandbox: the default
    assert candidates("-i /no/such/inventory start --host ") == []
    assert candidates("db-task ") == [completion.FILES]
    assert candidates("release 2.1.0 --image ") == [completion.FILES]


def test_versions_come_from_the_cache_written_by_runs_and_stage(tmp_path: Path) -> None:
    prod = paths.INVENTORY_DIR / "prod"
    assert candidates("-i prod release ") == []
    completion.remember_versions(prod, ["ella-release-v2.0.0.sif", "ella-release-v2.1.0.sif", "notes.txt",
                                        "ella-release-v2.1.0.sif.sha256", "ella-release-v2.0.10.sif"])
    assert candidates("-i prod release ") == ["2.0.0", "2.0.10", "2.1.0"]
    assert candidates("release 2.1 -i prod") == ["prod", completion.FILES]  # still the option's value
    assert candidates("rehearse -i prod 2.0.") == ["2.0.0", "2.0.10"]
    completion.remember_versions(prod, ["ella-release-v2.2.0.sif"], replace=False)
    assert candidates("--inventory prod records ") == ["2.0.0", "2.0.10", "2.1.0", "2.2.0"]
    assert candidates("release ") == []  # the sandbox's are its own
    completion.remember_versions(prod, ["ella-release-v3.0.0.sif"])
    assert completion.cached_versions(prod) == ["3.0.0"]


def test_an_unwritable_cache_is_no_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(blocked / "state"))
    completion.remember_versions(paths.INVENTORY_DIR / "prod", ["ella-release-v2.0.0.sif"])
    assert completion.cached_versions(paths.INVENTORY_DIR / "prod") == []


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ella_deploy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_the_hidden_command_is_fast_and_loads_no_ansible() -> None:
    probe = ("import sys, time\nfrom ella_deploy import cli\nstarted = time.perf_counter()\n"
             "cli.main(['__complete', '4', '-i', 'prod', 'start', '--host', ''])\n"
             "print('SECONDS', time.perf_counter() - started, file=sys.stderr)\n"
             "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('ansible', 'ansible_runner', "
             "'rich')), file=sys.stderr)\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - started
    assert done.stdout == "p22-ella-01\np22-ella-fo-01\n", done.stderr
    assert "LOADED []" in done.stderr
    assert float(done.stderr.split("SECONDS ")[1].split()[0]) < 0.5
    assert elapsed < 3  # the interpreter's start included


def test_broken_input_completes_nothing_quietly() -> None:
    for args in (["__complete"], ["__complete", "x"], ["__complete", "9", "stop"]):
        done = run(*args)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """`ella-deploy` on PATH as the shell scripts call it (this checkout's)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "ella-deploy"
    program.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m ella_deploy \"$@\"\n")
    program.chmod(0o755)
    return program


def test_bash_completes_through_the_script(program: Path, tmp_path: Path) -> None:
    script = run("completion", "bash").stdout
    assert script.startswith("# ella-deploy completion (bash)")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "fix.sql").write_text("")

    def complete(*words: str) -> list[str]:
        test = (f'eval "$(ella-deploy completion bash)"\n'
                f'COMP_WORDS=(ella-deploy {" ".join(repr(w) for w in words)}); COMP_CWORD={len(words)}\n'
                '_ella_deploy\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
        done = subprocess.run(["bash", "-c", test], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PATH": f"{program.parent}:{os.environ['PATH']}",
                                   "ELLA_DEPLOY_STATE_DIR": str(tmp_path / "state")}, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("sto") == ["stop"]
    assert complete("--inventory", "prod", "failover", "--to", "") == ["p22-ella-01", "p22-ella-fo-01"]
    assert complete("db-task", "tasks/f") == ["tasks/fix.sql"]
    assert "prod" in complete("-i", "") and "tasks" in complete("-i", "")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_loads(program: Path, tmp_path: Path) -> None:
    test = ('autoload -U compinit && compinit -u -d "$TMPDIR/zcompdump"\n'
            'eval "$(ella-deploy completion zsh)"\nprint -r -- ${_comps[ella-deploy]}\n')
    done = subprocess.run(["zsh", "-f", "-c", test], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PATH": f"{program.parent}:{os.environ['PATH']}",
                               "TMPDIR": str(tmp_path)})
    assert done.stdout.strip() == "_ella_deploy", done.stderr


def test_the_zsh_script_asks_the_same_hidden_command() -> None:
    script = run("completion", "zsh").stdout
    assert script.startswith("#compdef ella-deploy")
    assert '__complete "$((CURRENT - 2))"' in script and "compdef _ella_deploy ella-deploy" in script


def test_completion_versions_reads_the_cache_without_a_host() -> None:
    completion.remember_versions(paths.INVENTORY_DIR / "prod", ["ella-release-v2.1.0.sif"])
    done = run("completion", "versions", "-i", "prod")
    assert (done.returncode, done.stdout) == (0, "2.1.0\n"), done.stderr
    done = run("completion", "bash", "--refresh")
    assert done.returncode == 64 and done.stderr == "ella-deploy: completion: --refresh is for `completion versions`\n"
