"""Runs the project's playbooks through ansible-runner and turns its events into results.

Secrets never pass through here: they live in vault files or on the target hosts. This
module also keeps the caller's environment out of the run (ansible-runner copies the whole
environment into `artifacts/<id>/command`), so a token in the operator's shell cannot end
up on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ella_deploy import paths
from ella_deploy.errors import EllaDeployError, ExitCode

# Variables a run may inherit from the caller. Everything else is dropped for the run.
INHERITED_ENVIRONMENT = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "SSH_AUTH_SOCK",
    "ELLA_SANDBOX_DIR",
    # The port of the sandbox's loopback SMTP server (tests).
    "ELLA_SANDBOX_SMTP_PORT",
    # How many extra ELLA VMs the sandbox has (the growth benchmark).
    "ELLA_SANDBOX_EXTRA_HOSTS",
    # A path, not a secret: where ansible-vault's password file is.
    "ANSIBLE_VAULT_PASSWORD_FILE",
)

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# Task names whose failure is a refusal for safety: the playbooks name their checks so.
REFUSING_TASKS = ("Refuse", "Take the deploy lock")

# Runner artifacts kept per operator; older runs are rotated away beyond this count.
KEPT_RUNS = 200
# How often a run in progress asks whether the operator interrupted it.
CANCEL_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class HostFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class PlaybookResult:
    """What a playbook run produced, read from ansible-runner's structured events."""

    playbook: str
    status: str
    rc: int
    artifact_dir: Path
    seconds: float
    # Data published by the playbook with ansible.builtin.set_stats.
    published: dict[str, Any] = field(default_factory=dict)
    failures: list[HostFailure] = field(default_factory=list)
    # Per host: ok / changed / failures / unreachable / skipped counters.
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0

    @property
    def canceled(self) -> bool:
        return self.status == "canceled"

    def error_summary(self) -> str:
        """One line for the operator: the failure that ended the run, else Ansible's own error."""
        if self.failures:
            # The last failure is the one that ended the run (earlier ones were rescued).
            last = self.failures[-1]
            return f"{last.host}: {'unreachable' if last.unreachable else last.task}: {last.message}"
        # A playbook-level error (syntax, undefined variable) fails no host; its text is
        # only in the run's stdout. Fallback diagnostics, never used to decide anything.
        stdout = self.artifact_dir / "artifacts" / "run" / "stdout"
        text = ANSI_ESCAPE.sub("", stdout.read_text(errors="replace")) if stdout.exists() else ""
        errors = [line for line in text.splitlines() if line.startswith("[ERROR]:")]
        reason = errors[0].removeprefix("[ERROR]:").strip() if errors else self.status
        return f"{reason} (artifacts: {self.artifact_dir})"

    @property
    def refused(self) -> bool:
        """The run ended on a safety refusal (a `Refuse ...` check, the deploy lock), not a failed step."""
        return bool(self.failures) and self.failures[-1].task.startswith(REFUSING_TASKS)

    @property
    def unreachable_hosts(self) -> list[str]:
        return sorted({f.host for f in self.failures if f.unreachable})


ProgressCallback = Callable[[str], None]
# A progress callback may also observe every event of the run: then it has this method
# (progress.Steps has), called before the callback hears of the task it names.
OBSERVE_EVENT = "observe_event"

# Ansible's verbosity for every run of this process (the CLI's -v count). Verbose output
# goes to the run's artifacts, never to the terminal.
VERBOSITY = 0


def literal(value: Any) -> Any:
    """Extra vars as data, never as templates: Ansible renders the strings of extra vars, so a
    `{{`, `{%` or `{#` in text the CLI hands over (a statement of a db-task, a reviewer from
    git, a log line in a TSD report, a broadcast) would run as Jinja on this machine. Every
    `{` becomes the expression `{{ '{' }}`, which renders back to `{`."""
    if isinstance(value, str):
        return value.replace("{", "{{ '{' }}")
    if isinstance(value, Mapping):
        return {key: literal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(item) for item in value]
    return value


@contextlib.contextmanager
def _isolated_environment(extra: Mapping[str, str]) -> Iterator[None]:
    """Reduce os.environ to the allow-list (plus `extra`) for the duration of a run."""
    saved = dict(os.environ)
    try:
        kept = {k: v for k, v in saved.items() if k in INHERITED_ENVIRONMENT}
        # ansible-playbook lives beside the interpreter in the project's virtualenv.
        kept["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), kept.get("PATH", "")])
        os.environ.clear()
        os.environ.update(kept)
        os.environ.update(extra)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _close_connections(control_dir: Path) -> None:
    """End the run's shared SSH connections and remove their directory."""
    for socket_path in control_dir.iterdir() if control_dir.is_dir() else ():
        subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "ella-deploy-run"],
                       capture_output=True, timeout=10, check=False)
    shutil.rmtree(control_dir, ignore_errors=True)


def _failure_message(result: Mapping[str, Any]) -> str:
    """The message of a failed task; for a failed command, the last line it printed."""
    message = str(result.get("msg") or "").strip()
    # A filter's own error is what the operator needs, not Ansible's wrapping of it.
    if "The filter plugin" in message and " failed: " in message:
        message = message.rsplit(" failed: ", 1)[1]
    for key in ("stderr", "stdout"):
        text = str(result.get(key) or "").strip()
        if text and (not message or message == "non-zero return code"):
            return f"{text.splitlines()[-1]} (exit {result.get('rc', '?')})"
    return message or "failed"


def run_playbook(
    playbook: str | Path,
    inventory: Path,
    *,
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    check: bool = False,
    verbosity: int = 0,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PlaybookResult:
    """Run `ansible/playbooks/<playbook>` (or a playbook path) against `inventory`.

    Host failures do not raise: they are in the result.

    `extravars` must hold no secret: ansible-runner hands them to ansible-playbook in a
    file under the private data dir.
    """
    import ansible_runner  # deferred: `ella-deploy --help` must not import Ansible

    playbook_path = paths.PLAYBOOK_DIR / playbook  # an absolute `playbook` stays as it is
    if not playbook_path.is_file():
        raise EllaDeployError(f"no playbook {playbook_path}", ExitCode.ENVIRONMENT)

    run_root = paths.state_dir() / "runs"
    run_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{playbook_path.stem}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    private_data_dir = run_root / ident
    private_data_dir.mkdir(mode=0o700)

    published: dict[str, Any] = {}
    failures: list[HostFailure] = []

    observe_event = getattr(progress, OBSERVE_EVENT, None)

    def on_event(event: dict[str, Any]) -> bool:
        if observe_event is not None:
            try:
                observe_event(event)
            except Exception:  # noqa: BLE001 - showing progress must never stop a run (a release!)
                pass
        kind = event.get("event")
        data = event.get("event_data", {})
        if kind == "playbook_on_task_start" and progress:
            # The steps a playbook names itself, not every task of every role.
            task_name = str(data.get("task", ""))
            if str(data.get("task_path", "")).startswith(str(playbook_path.parent)) and not task_name.startswith(
                "Validating arguments"
            ):
                progress(task_name)
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                return True
            failures.append(
                HostFailure(
                    host=data.get("host", "?"),
                    task=data.get("task", "?"),
                    message=_failure_message(data.get("res", {})),
                    unreachable=kind == "runner_on_unreachable",
                )
            )
        elif kind == "playbook_on_stats":
            published.update(data.get("artifact_data") or {})
        return True

    # Extra vars go to ansible-playbook as a file (-e @env/extravars, 0600), never on its
    # command line: ps shows that, and ansible-runner keeps it in artifacts/*/command.
    extravars_file = private_data_dir / "env" / "extravars"
    extravars_file.parent.mkdir(mode=0o700)
    extravars_file.touch(mode=0o600)
    extravars_file.write_text(json.dumps(literal(dict(extravars or {}))))
    # ansible-runner asks `cancel` only when its wait for output times out (5 s by default): in
    # 5 s a release goes on from its migration to the new version's start. Asked every 0.2 s,
    # Ctrl-C stops ansible-playbook before its next task. (Only env/settings sets it: the
    # `settings` argument of ansible_runner.run is dropped when that file is missing.)
    (private_data_dir / "env" / "settings").write_text(json.dumps({"pexpect_timeout": CANCEL_POLL_SECONDS}))
    cmdline = ["--check"] if check else []
    started = time.monotonic()
    # ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False unless the caller set it, and that
    # overrides ansible.cfg: hosts would answer with any key. Pinned keys are checked, always,
    # on every run: SSH's shared connections (ControlPersist) live in a directory of this run
    # only, so no run rides on a connection whose host key an earlier run checked.
    control_dir = Path(tempfile.mkdtemp(prefix="ella-cp-"))
    try:
        with _isolated_environment({"ANSIBLE_CONFIG": str(paths.PROJECT_ROOT / "ansible.cfg"),
                                    "ANSIBLE_HOST_KEY_CHECKING": "True",
                                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir)}):
            runner = ansible_runner.run(
                private_data_dir=str(private_data_dir),
                ident="run",
                playbook=str(playbook_path),
                inventory=str(inventory),
                limit=limit,
                cmdline=" ".join(cmdline) or None,
                verbosity=(verbosity or VERBOSITY) or None,
                quiet=True,
                suppress_env_files=True,
                rotate_artifacts=0,
                event_handler=on_event,
                # When it says so, ansible-playbook is stopped; what runs on a host goes on to its
                # next step boundary (ella_release_window ignores the hangup).
                cancel_callback=cancel,
            )
    finally:
        # What the run was given may be data (a db-task's statements): not kept beyond the
        # run, also when it ends by an exception (KeyboardInterrupt included).
        extravars_file.unlink(missing_ok=True)
        _close_connections(control_dir)
    seconds = time.monotonic() - started
    _rotate(run_root)

    stats: dict[str, dict[str, int]] = {}
    for counter, per_host in (runner.stats or {}).items():
        if isinstance(per_host, dict):
            for host, count in per_host.items():
                stats.setdefault(host, {})[counter] = int(count)

    return PlaybookResult(
        playbook=playbook_path.name,
        status=runner.status,
        rc=runner.rc,
        artifact_dir=private_data_dir,
        seconds=seconds,
        published=published,
        failures=failures,
        stats=stats,
    )


def _rotate(run_root: Path) -> None:
    import shutil

    runs = sorted(p for p in run_root.iterdir() if p.is_dir())
    for old in runs[:-KEPT_RUNS]:
        shutil.rmtree(old, ignore_errors=True)
