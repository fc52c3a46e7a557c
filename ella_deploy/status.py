"""`ella-deploy status`: what runs where, and the environment's verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ella_deploy import guard
from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import PlaybookResult, ProgressCallback, run_playbook


@dataclass(frozen=True)
class HostStatus:
    host: str
    reachable: bool
    role: str
    supervisord: str
    ella: str
    uptime_seconds: int | None
    symlink_version: str | None
    running_versions: tuple[str, ...]
    stray_processes: int
    # Sessions in ELLA's database from this host; None when they could not be read.
    db_sessions: int | None
    active: bool
    error: str | None = None
    # ELLA's own programs inside the image (nginx, api, polling, analysis-watcher) that are
    # not RUNNING while the outer program is: the API may be dead behind a RUNNING program.
    inner_problems: tuple[str, ...] = ()
    # ella-cli runs on the host (a migration by hand?).
    cli_processes: int = 0


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    primary: str
    verdict: str
    active_hosts: tuple[str, ...]
    reasons: tuple[str, ...]
    hosts: tuple[HostStatus, ...]
    exit_code: int
    # The deploy lock (held, holder, heartbeat_age, gone) and the last release's journal.
    lock: dict[str, Any] | None = None
    journal: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def host_status(
    name: str, primary: str, report: dict[str, Any] | None, error: str | None, db_sessions: int | None
) -> HostStatus:
    view = guard.host_view(name, report, db_sessions or 0)
    role = "primary" if name == primary else "standby"
    if report is None:
        return HostStatus(name, False, role, "?", "?", None, None, (), 0, db_sessions, view.active, error)
    supervisord = report["supervisord"]
    program = report["program"]
    processes = report["processes"]
    inner = report.get("inner") or {}
    inner_problems = tuple(f"{name} {state}" for name, state in sorted((inner.get("programs") or {}).items())
                           if state != "RUNNING")
    if processes and inner.get("error"):
        inner_problems += (f"ELLA's own supervisord does not answer ({inner['error']})",)
    return HostStatus(
        host=name,
        reachable=True,
        role=role,
        supervisord="up" if supervisord["running"] else "down",
        ella=program["state"] if supervisord["running"] else ("STRAY" if processes else "STOPPED"),
        uptime_seconds=program.get("uptime_seconds"),
        symlink_version=report["symlink"].get("version"),
        running_versions=tuple(p["version"] or p["image"] for p in processes),
        stray_processes=view.stray_instances,
        db_sessions=db_sessions,
        active=view.active,
        error=supervisord.get("error") if not supervisord["running"] else None,
        inner_problems=inner_problems,
        cli_processes=len(report.get("cli") or []),
    )


def collect(inventory: Path, progress: ProgressCallback | None = None) -> EnvironmentStatus:
    return from_result(run_playbook("status.yml", inventory, progress=progress), inventory)


def from_result(result: PlaybookResult, inventory: Path, command: str = "status") -> EnvironmentStatus:
    """The status out of a run of a playbook that applies the ella_status role."""
    published = result.published.get("ella_status", {})
    reports: dict[str, Any] = published.get("hosts", {})
    if not reports and not result.unreachable_hosts:
        # Nothing was learnt about any host: that is no evidence that ELLA is stopped.
        raise EllaDeployError(f"{command}: {result.error_summary()}", ExitCode.FAILED)
    failures = {f.host: f.message for f in result.failures}
    names = sorted(set(reports) | set(failures) | set(result.stats))
    primary = published.get("primary", "")
    rows = published.get("session_rows")
    sessions = None if rows is None else guard.sessions_of(rows, guard.resolve_addresses(published.get("session_addresses")))
    counts = sessions.by_host if sessions else {}
    hosts = tuple(host_status(n, primary, reports.get(n), failures.get(n), counts.get(n, 0) if sessions else None)
                  for n in names)
    verdict = guard.judge([guard.host_view(n, reports.get(n), counts.get(n, 0)) for n in names],
                          sessions=sessions)
    return EnvironmentStatus(
        environment=published.get("environment", inventory.name),
        primary=primary,
        verdict=verdict.state,
        active_hosts=verdict.active_hosts,
        reasons=verdict.reasons,
        hosts=hosts,
        exit_code=verdict.exit_code,
        lock=published.get("lock"),
        journal=published.get("journal"),
    )


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def render(status: EnvironmentStatus) -> str:
    headline = f"{status.environment}: {status.verdict}"
    if status.active_hosts:
        headline += f" on {', '.join(status.active_hosts)}"
    header = ("HOST", "REACHABLE", "SUPERVISORD", "ELLA", "UPTIME", "SYMLINK", "RUNNING", "DB", "ROLE")
    rows = [header]
    for host in status.hosts:
        rows.append((
            host.host,
            "yes" if host.reachable else "NO",
            host.supervisord,
            host.ella,
            _duration(host.uptime_seconds),
            host.symlink_version or "-",
            ",".join(host.running_versions) or "-",
            "?" if host.db_sessions is None else str(host.db_sessions),
            host.role + (", active" if host.active else ""),
        ))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [headline, ""]
    lines += ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines += [f"! {reason}" for reason in status.reasons]
    lines += [f"! {h.host}: {h.error}" for h in status.hosts if h.error]
    lines += [f"! {h.host}: ELLA's program runs, but inside it: {', '.join(h.inner_problems)}"
              for h in status.hosts if h.inner_problems]
    lines += [f"! {h.host}: {h.cli_processes} ella-cli run(s) in progress" for h in status.hosts if h.cli_processes]
    lock = status.lock or {}
    if lock.get("held"):
        holder = lock.get("holder") or {}
        lines.append(f"! deploy lock held by {holder.get('operator')} ({holder.get('command')}) since {holder.get('since')}, "
                     f"heartbeat {lock.get('heartbeat_age')}s ago"
                     + (f": its holder is gone ({lock['gone']}); `ella-deploy recover` breaks it" if lock.get("gone")
                        else ": that run is still going"))
    journal = status.journal or {}
    if journal.get("open"):
        lines.append(f"! the release of {journal.get('version')} (from {journal.get('previous_version')}) stopped in "
                     f"phase {journal.get('phase')}, last step {(journal.get('steps') or [{}])[-1].get('step')}: "
                     "`ella-deploy recover` finishes or rolls it back")
    return "\n".join(lines)
