"""start, stop, restart, failover, failback: moving ELLA between hosts, never two at once.

Each is one playbook that takes the deploy lock, runs the single-active guard before any
start and writes an audit record; this module passes the operator's choices and reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ella_deploy import audit
from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import ProgressCallback, run_playbook


@dataclass(frozen=True)
class ControlResult:
    action: str
    record: dict[str, Any] | None
    errors: tuple[str, ...]
    refused: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


def _run(
    action: str,
    playbook: str,
    inventory: Path,
    command: str,
    fenced_hosts: tuple[str, ...],
    extravars: dict[str, Any],
    progress: ProgressCallback | None,
) -> ControlResult:
    variables = {**audit.run_metadata(command, fenced_hosts), **extravars}
    result = run_playbook(playbook, inventory, extravars=variables, progress=progress)
    record = result.published.get("ella_audit_record")
    errors = () if result.ok else (result.error_summary(),)
    return ControlResult(action, record, errors, result.refused)


def start(inventory: Path, host: str | None, command: str, fenced: tuple[str, ...] = (),
          progress: ProgressCallback | None = None) -> ControlResult:
    return _run("start", "start.yml", inventory, command, fenced,
                {"ella_start_host": host} if host else {}, progress)


def stop(inventory: Path, host: str | None, command: str, progress: ProgressCallback | None = None) -> ControlResult:
    return _run("stop", "stop.yml", inventory, command, (), {"ella_stop_hosts": host} if host else {}, progress)


def restart(inventory: Path, host: str | None, command: str, fenced: tuple[str, ...] = (),
            progress: ProgressCallback | None = None) -> ControlResult:
    stopped = stop(inventory, host, command, progress)
    if not stopped.ok:
        return ControlResult("restart", stopped.record, stopped.errors, stopped.refused)
    started = start(inventory, host, command, fenced, progress)
    return ControlResult("restart", started.record, started.errors, started.refused)


def failover(inventory: Path, to: str | None, back: bool, command: str, fenced: tuple[str, ...] = (),
             progress: ProgressCallback | None = None) -> ControlResult:
    if to and back:
        raise EllaDeployError("failback goes to the primary; --to is for failover", ExitCode.USAGE)
    extravars: dict[str, Any] = {"ella_failover_back": back}
    if to:
        extravars["ella_failover_to"] = to
    return _run("failback" if back else "failover", "failover.yml", inventory, command, fenced, extravars, progress)


def render(result: ControlResult) -> str:
    record = result.record or {}
    lines = []
    if record:
        where = record.get("host") or ", ".join(record.get("stopped", []))
        line = f"{result.action}: {record.get('outcome', '?')}" + (f" on {where}" if where else "")
        if record.get("source"):
            line += f" (from {record['source']})"
        if record.get("downtime_seconds") not in (None, ""):
            line += f", downtime {float(record['downtime_seconds']):.1f}s"
        lines.append(line)
        if record.get("fenced_hosts"):
            lines.append(f"declared fenced by the operator: {', '.join(record['fenced_hosts'])} (audited)")
    return "\n".join(lines) or f"{result.action}: refused or failed before anything changed"
