"""The single-active rule: never two ELLA instances on one database.

Pure standard-library Python over the reports of the `ella_host_facts` module, so that
the CLI and the playbooks can judge with the same code.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

# Program states in which supervisor has, or is about to have, an ELLA process.
ACTIVE_PROGRAM_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF", "STOPPING"})

ONE_ACTIVE = "ONE ACTIVE"
NONE_ACTIVE = "NONE ACTIVE"
CONFLICT = "CONFLICT"
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class HostView:
    """One host as the guard sees it."""

    name: str
    reachable: bool
    # ELLA processes on the host, supervised or not.
    instances: int = 0
    stray_instances: int = 0
    program_state: str = "UNKNOWN"
    # Sessions in ELLA's database whose client address is this host's.
    db_sessions: int = 0

    @property
    def active(self) -> bool:
        return self.instances > 0 or self.program_state in ACTIVE_PROGRAM_STATES or self.db_sessions > 0


@dataclass(frozen=True)
class Sessions:
    """ELLA's database sessions as the database server lists them (pg_stat_activity)."""

    by_host: dict[str, int] = field(default_factory=dict)
    # Client addresses that are no inventory host: someone else uses ELLA's database.
    foreign: dict[str, int] = field(default_factory=dict)
    # Unix-socket sessions on the database server itself (client_addr is empty).
    local: int = 0


@dataclass(frozen=True)
class Verdict:
    state: str
    active_hosts: tuple[str, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return {ONE_ACTIVE: 0, NONE_ACTIVE: 1}.get(self.state, 2)


def resolve_addresses(hosts: dict[str, Any] | None) -> dict[str, list[str]]:
    """host -> every address its sessions may come from: the given addresses or names,
    and what the names resolve to here."""
    found = {}
    for host, given in (hosts or {}).items():
        candidates = [given] if isinstance(given, str) else list(given or [])
        resolved: set[str] = set()
        for candidate in (str(c) for c in candidates if c):
            resolved.add(candidate)
            try:
                resolved |= {str(info[4][0]) for info in socket.getaddrinfo(candidate, None)}
            except OSError:
                pass
        found[host] = sorted(resolved)
    return found


def sessions_of(rows: list[dict[str, Any]], addresses: dict[str, list[str]]) -> Sessions:
    """Map pg_stat_activity rows ({"client": address or None}) to inventory hosts."""
    owner = {address: host for host, host_addresses in addresses.items() for address in host_addresses}
    by_host: dict[str, int] = {}
    foreign: dict[str, int] = {}
    local = 0
    for row in rows:
        client = row.get("client")
        if not client:
            local += 1
        elif client in owner:
            by_host[owner[client]] = by_host.get(owner[client], 0) + 1
        else:
            foreign[client] = foreign.get(client, 0) + 1
    return Sessions(by_host, foreign, local)


def host_view(name: str, report: dict[str, Any] | None, db_sessions: int = 0) -> HostView:
    """Read an `ella_host_facts` report; None means the host could not be reached."""
    if report is None:
        return HostView(name=name, reachable=False, db_sessions=db_sessions)
    processes = report.get("processes") or []
    return HostView(
        name=name,
        reachable=True,
        instances=len(processes),
        stray_instances=sum(1 for p in processes if not p.get("supervised")),
        program_state=(report.get("program") or {}).get("state", "UNKNOWN"),
        db_sessions=db_sessions,
    )


def judge(
    views: list[HostView],
    fenced: tuple[str, ...] | list[str] = (),
    sessions: Sessions | None = Sessions(),
) -> Verdict:
    """The environment's state: exactly one instance on one reachable host is the only healthy one.

    An unreachable host is unknown, not stopped, unless the operator has declared it
    fenced (its VM is off); that declaration is named in the reasons, for the audit log.
    Database sessions count as ELLA running on the host they come from; sessions from an
    address outside the inventory are a conflict; sessions that could not be read
    (`sessions` None) make the state unknown.
    """
    reasons = []
    # A fenced VM is off: its sessions in ELLA's database are leftovers that TCP keepalive
    # would end only hours later. They are not ELLA running; a start ends them first.
    views = [HostView(v.name, v.reachable, v.instances, v.stray_instances, v.program_state, 0)
             if not v.reachable and v.name in fenced else v for v in views]
    for view in views:
        if not view.reachable and view.name in fenced:
            reasons.append(f"{view.name}: unreachable, declared fenced by the operator"
                           + (f"; its {sessions.by_host[view.name]} session(s) in ELLA's database are ended "
                              "before a start" if sessions and sessions.by_host.get(view.name) else ""))
        if view.stray_instances:
            reasons.append(f"{view.name}: {view.stray_instances} ELLA process(es) not under supervisor")
        if view.db_sessions and not view.instances:
            reasons.append(f"{view.name}: {view.db_sessions} session(s) in ELLA's database but no ELLA process")
    unknown = [v.name for v in views if not v.reachable and v.name not in fenced]
    active = tuple(v.name for v in views if v.active)
    instances = sum(v.instances for v in views)
    foreign = sessions.foreign if sessions else {}
    if foreign:
        reasons.append("sessions in ELLA's database from outside the inventory: "
                       + ", ".join(f"{address} ({count})" for address, count in sorted(foreign.items())))
    if len(active) > 1 or instances > 1 or foreign:
        reasons.append(f"ELLA runs on {', '.join(active) or 'no inventory host'} ({instances} processes)")
        return Verdict(CONFLICT, active, tuple(reasons))
    if unknown:
        reasons.append(f"unreachable, state unknown: {', '.join(unknown)}")
    if sessions is None:
        reasons.append("ELLA's database sessions could not be read")
    if unknown or sessions is None:
        return Verdict(UNKNOWN, active, tuple(reasons))
    if not active:
        return Verdict(NONE_ACTIVE, active, tuple(reasons))
    return Verdict(ONE_ACTIVE, active, tuple(reasons))
