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
    break_lock: str = "",
) -> ControlResult:
    # break_lock: the operator's reason to break a lock whose holder is gone (the lock module
    # judges; a lock whose holder is still there is never broken).
    variables = {**audit.run_metadata(command, fenced_hosts), "ella_deploy_break_lock": break_lock, **extravars}
    result = run_playbook(playbook, inventory, extravars=variables, progress=progress)
    record = result.published.get("ella_audit_record")
    errors = () if result.ok else (result.error_summary(),)
    return ControlResult(action, record, errors, result.refused)


def start(inventory: Path, host: str | None, command: str, fenced: tuple[str, ...] = (),
          progress: ProgressCallback | None = None, break_lock: str = "") -> ControlResult:
    return _run("start", "start.yml", inventory, command, fenced,
                {"ella_start_host": host} if host else {}, progress, break_lock)


def stop(inventory: Path, host: str | None, command: str, progress: ProgressCallback | None = None,
         break_lock: str = "") -> ControlResult:
    return _run("stop", "stop.yml", inventory, command, (), {"ella_stop_hosts": host} if host else {}, progress,
                break_lock)


def restart(inventory: Path, host: str | None, command: str, fenced: tuple[str, ...] = (),
            progress: ProgressCallback | None = None, break_lock: str = "") -> ControlResult:
    stopped = stop(inventory, host, command, progress, break_lock)
    if not stopped.ok:
        return ControlResult("restart", stopped.record, stopped.errors, stopped.refused)
    started = start(inventory, host, command, fenced, progress)
    return ControlResult("restart", started.record, started.errors, started.refused)


def failover(inventory: Path, to: str | None, back: bool, command: str, fenced: tuple[str, ...] = (),
             progress: ProgressCallback | None = None, break_lock: str = "") -> ControlResult:
    if to and back:
        raise EllaDeployError("failback goes to the primary; --to is for failover", ExitCode.USAGE)
    extravars: dict[str, Any] = {"ella_failover_back": back}
    if to:
        extravars["ella_failover_to"] = to
    return _run("failback" if back else "failover", "failover.yml", inventory, command, fenced, extravars, progress,
                break_lock)


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


def recover(inventory: Path, command: str, fenced: tuple[str, ...] = (),
            progress: ProgressCallback | None = None, cancel: bool = False, keep_new: str = "") -> dict[str, Any]:
    """After an interrupted run: what production is in, and the release finished or rolled
    back under the lock (ansible/playbooks/recover.yml decides, from the journal). `cancel`
    (the operator's Ctrl-C): the step still running on the host stops at its next boundary
    instead of going on to go-live. `keep_new`: the operator's reason to keep the new version
    (audited) instead of rolling back what never served."""
    variables = audit.run_metadata(command, fenced) | {"ella_recover_cancel": cancel,
                                                       "ella_recover_keep_new": keep_new}
    result = run_playbook("recover.yml", inventory, extravars=variables, progress=progress)
    found = dict(result.published.get("ella_recovery") or {})
    found["record"] = result.published.get("ella_audit_record")
    found["errors"] = [] if result.ok else [result.error_summary()]
    found["refused"] = result.refused
    if not found.get("decision") and not result.ok:
        raise EllaDeployError(f"recover: {result.error_summary()}",
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    return found


def render_recovery(found: dict[str, Any]) -> str:
    journal = found.get("journal") or {}
    lock = found.get("lock") or {}
    decision = found.get("decision") or {}
    lines = []
    if journal:
        steps = ", ".join(f"{s['step']} {s['state']}" for s in journal.get("steps") or [])
        lines.append(f"journal: release of {journal.get('version')} from {journal.get('previous_version') or 'none'} "
                     f"on {journal.get('host')}: phase {journal.get('phase')} ({steps or 'no steps'})")
    else:
        lines.append("journal: none")
    if lock.get("held"):
        holder = lock.get("holder") or {}
        lines.append(f"lock: held by {holder.get('operator')} ({holder.get('command')}), heartbeat "
                     f"{lock.get('heartbeat_age')}s ago" + (f"; gone: {lock['gone']}" if lock.get("gone") else
                                                            "; its holder is still there"))
    else:
        lines.append("lock: free")
    served = found.get("served") or {}
    if served.get("served"):
        lines.append(f"served since the window (ELLA's own log): {served.get('summary')}")
    lines.append(f"decision: {decision.get('action', '?')}: {decision.get('why', '')}")
    record = found.get("record") or {}
    if record:
        lines.append(f"recovered: {record.get('outcome')}"
                     + (f" ({record['rollback'].get('summary') or ''})" if record.get("rollback") else "")
                     + (f"; lock broken ({record['lock_broken'].get('gone')})" if record.get("lock_broken") else ""))
    for error in found.get("errors") or []:
        lines.append(f"! {error}")
    return "\n".join(lines)
