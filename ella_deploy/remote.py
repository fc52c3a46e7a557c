"""Interactive commands on an ELLA host over SSH: the `psql` prompt and `logs --follow`.

Ansible cannot hold a terminal, so connection.yml hands over how Ansible reaches the host
(address, user, key, SSH options: the inventory's own) and the CLI runs `ssh` itself.
No password travels: psql reads it from the pgpass file on the shared storage.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
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
