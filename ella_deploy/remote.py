"""Commands on an ELLA host over SSH: the `psql` prompt, `logs --follow`, and the release
journal read live while a release runs (progress by step).

Ansible cannot hold a terminal, so connection.yml hands over how Ansible reaches the host
(address, user, key, SSH options: the inventory's own) and the CLI runs `ssh` itself.
No password travels: psql reads it from the pgpass file on the shared storage.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import run_playbook


@dataclass(frozen=True)
class Connection:
    host: str
    address: str
    port: int
    user: str
    private_key: str
    ssh_args: str
    service_user: str
    root: str
    pgpassfile: str
    database: dict[str, Any]

    def ssh(self, remote: list[str], tty: bool) -> list[str]:
        """The ssh command line that runs `remote` (an argv) on the host."""
        argv = ["ssh", "-t" if tty else "-T", "-p", str(self.port)]
        if self.private_key:
            argv += ["-i", self.private_key]
        argv += shlex.split(self.ssh_args)
        if self.user:
            argv += ["-l", self.user]
        return [*argv, self.address, "--", shlex.join(remote)]

    def as_service_user(self, argv: list[str], **env: str) -> list[str]:
        """`argv` as the service user (non-interactive sudo, as Ansible's become)."""
        assignments = [f"{name}={value}" for name, value in env.items()]
        return ["sudo", "-n", "-u", self.service_user, "-H", "env", *assignments, *argv]


def connect(inventory: Path, host: str | None, command: str) -> Connection:
    extravars = {"ella_shell_host": host} if host else {}
    result = run_playbook("connection.yml", inventory, extravars=extravars)
    published = result.published.get("ella_connection")
    if not result.ok or published is None:
        reason = result.error_summary() if not result.ok else "no ELLA host of the inventory answers"
        raise EllaDeployError(f"{command}: {reason}", ExitCode.FAILED)
    return Connection(**{**published, "port": int(published["port"])})


def psql_argv(connection: Connection, sql: str | None) -> list[str]:
    """psql as the read-only login; -c runs one query string and stops at the first error."""
    database = connection.database
    conninfo = (f"host={database['host']} port={database['port']} dbname={database['name']} "
                f"user={database['readonly_login']} application_name=ella-deploy-psql")
    # ON_ERROR_STOP: a piped script stops at its first error and psql exits non-zero.
    psql = ["psql", "--no-password", "-v", "ON_ERROR_STOP=1", conninfo]
    if sql is not None:
        psql += ["-c", sql]
    return connection.as_service_user(psql, PGPASSFILE=connection.pgpassfile)


def follow_argv(connection: Connection, log_file: str, lines: int) -> list[str]:
    path = f"{connection.root}/ella-prod/logs/{log_file}"
    return connection.as_service_user(["tail", "-n", str(lines), "-F", path])


def run(argv: list[str]) -> int:
    """Run with the terminal handed over; the remote command's exit code."""
    # ansible-runner leaves its own SIGINT handler behind: Ctrl-C must end the session here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.run(argv, check=False).returncode
    except FileNotFoundError as error:
        raise EllaDeployError(f"{argv[0]} is not installed on this machine", ExitCode.ENVIRONMENT) from error


def batch_ssh(connection: Connection, remote: list[str]) -> list[str]:
    """ssh for a command that runs on its own: never a password prompt on the operator's terminal."""
    argv = connection.ssh(remote, tty=False)
    return [argv[0], "-o", "BatchMode=yes", *argv[1:]]


# Runs on the host as the service user: the journal, then a record separator, every $2 s.
# The journal is replaced by rename, so each `cat` reads one whole version of it.
JOURNAL_LOOP = 'while :; do cat "$1" 2>/dev/null; printf "\\036"; sleep "$2"; done'
RECORD_SEPARATOR = b"\x1e"


class RemoteJournal:
    """Snapshots of the release journal (deploy/journal.json on the shared storage) while a
    release runs, read over one SSH session: an iterable of dicts (None: no journal there)
    that ends when close() is called or the session ends. progress.JournalFollower reads it."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    @classmethod
    def over_ssh(cls, connection: Connection, interval: float = 1.0) -> RemoteJournal:
        path = f"{connection.root}/deploy/journal.json"
        loop = connection.as_service_user(["sh", "-c", JOURNAL_LOOP, "ella-journal", path, str(interval)])
        return cls(batch_ssh(connection, loop))

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        import json

        if self._closed:
            return
        # Its own session: the operator's Ctrl-C is the release's to handle, not ssh's.
        self._process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        assert self._process.stdout is not None
        buffer = b""
        while True:
            chunk = self._process.stdout.read1(65536)
            if not chunk:
                return
            buffer += chunk
            while RECORD_SEPARATOR in buffer:
                record, buffer = buffer.split(RECORD_SEPARATOR, 1)
                try:
                    yield json.loads(record) if record.strip() else None
                except ValueError:
                    yield None

    def close(self) -> None:
        self._closed = True
        process = self._process
        if process is not None and process.poll() is None:
            # Its whole process group (its own session): no child may keep the pipe open.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def staged_files(connection: Connection) -> list[str]:
    """The file names in archive/releases (`{ella_root}/archive/releases`, the release role's default)."""
    argv = batch_ssh(connection, connection.as_service_user(["ls", "-1", f"{connection.root}/archive/releases"]))
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                              check=False)
    except FileNotFoundError as error:
        raise EllaDeployError("ssh is not installed on this machine", ExitCode.ENVIRONMENT) from error
    except subprocess.TimeoutExpired as error:
        raise EllaDeployError(f"{connection.host} did not list archive/releases within 30 s", ExitCode.FAILED) from error
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EllaDeployError(f"{connection.host}: listing archive/releases failed: {last}", ExitCode.FAILED)
    return done.stdout.split()
