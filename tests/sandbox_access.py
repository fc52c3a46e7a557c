"""How tests look at sandbox hosts directly, around the tool: podman exec, SSH, psql.

Assertions are made on what is really there (processes, files, rows), never on what
ella-deploy says about it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ella_deploy import paths, sandbox

PROD_ROOT = "/ess/p22/data/durable/production/ella"


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


class SandboxAccess:
    def __init__(self) -> None:
        self.state_dir = paths.sandbox_dir()
        self.hosts = {h.name: h for h in sandbox.hosts()}

    def any_container(self) -> bool:
        listed = subprocess.run(
            ["podman", "ps", "--all", "--quiet", "--filter", f"label={sandbox.LABEL}"],
            capture_output=True, text=True,
        )
        return bool(listed.stdout.strip())

    def address(self, host: str) -> str:
        return self.hosts[host].address

    def secret(self, name: str) -> str:
        return (self.state_dir / "secrets" / name).read_text().strip()

    def storage(self, relative: str, environment: str = "sandbox") -> Path:
        """A path on an environment's shared storage, as this machine sees it."""
        return self.state_dir / "storage" / environment / relative

    def journal(self) -> dict:
        path = self.storage("deploy/journal.json")
        return json.loads(path.read_text()) if path.exists() else {}

    def databases(self) -> list[str]:
        return self.psql("SELECT datname FROM pg_database ORDER BY 1;", "postgres").split()

    def exec(self, host: str, command: str, user: str = "root", check: bool = True) -> Result:
        """Run a shell command on a host (podman exec, no SSH involved)."""
        done = subprocess.run(
            ["podman", "exec", "--user", user, self.hosts[host].container, "sh", "-c", command],
            capture_output=True, text=True,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"{host}$ {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}")
        return result

    def ssh(self, host: str, command: str, check: bool = True) -> Result:
        """Run a command over SSH as the operator, with the sandbox's pinned host keys."""
        ssh_dir = self.state_dir / "ssh"
        done = subprocess.run(
            [
                "ssh", "-i", str(ssh_dir / "id_ed25519"),
                "-o", f"UserKnownHostsFile={ssh_dir / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={host}",
                "-o", "BatchMode=yes", f"deploy@{self.address(host)}", command,
            ],
            capture_output=True, text=True, timeout=60,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"ssh {host} {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}")
        return result

    def psql(self, sql: str, database: str = "ella") -> str:
        """A query as the database superuser on the database server; rows as text."""
        done = subprocess.run(
            ["podman", "exec", "-i", "--user", "postgres", self.hosts["p22-ella-db"].container,
             "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database],
            input=sql, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise AssertionError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def audit_records(self) -> list[dict]:
        """The prod environment's audit log, read on the host (a line a crash tore is no record)."""
        text = self.exec("p22-ella-01", f"cat {PROD_ROOT}/deploy/audit.jsonl", check=False).stdout
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records
