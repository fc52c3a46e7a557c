"""The single-active rule: never two ELLA instances on one database.

Pure standard-library Python over the reports of the `ella_host_facts` module, so that
the CLI and the playbooks can judge with the same code.
"""

from __future__ import annotations

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

    @property
    def active(self) -> bool:
        return self.instances > 0 or self.program_state in ACTIVE_PROGRAM_STATES


@dataclass(frozen=True)
class Verdict:
    state: str
    active_hosts: tuple[str, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return {ONE_ACTIVE: 0, NONE_ACTIVE: 1}.get(self.state, 2)


def host_view(name: str, report: dict[str, Any] | None) -> HostView:
    """Read an `ella_host_facts` report; None means the host could not be reached."""
    if report is None:
        return HostView(name=name, reachable=False)
    processes = report.get("processes") or []
    return HostView(
        name=name,
        reachable=True,
        instances=len(processes),
        stray_instances=sum(1 for p in processes if not p.get("supervised")),
        program_state=(report.get("program") or {}).get("state", "UNKNOWN"),
    )


def judge(views: list[HostView], fenced: tuple[str, ...] | list[str] = ()) -> Verdict:
    """The environment's state: exactly one instance on one reachable host is the only healthy one.

    An unreachable host is unknown, not stopped, unless the operator has declared it
    fenced (its VM is off); that declaration is named in the reasons, for the audit log.
    """
    reasons = []
    for view in views:
        if not view.reachable and view.name in fenced:
            reasons.append(f"{view.name}: unreachable, declared fenced by the operator")
    unknown = [v.name for v in views if not v.reachable and v.name not in fenced]
    active = tuple(v.name for v in views if v.active)
    instances = sum(v.instances for v in views)
    for view in views:
        if view.stray_instances:
            reasons.append(f"{view.name}: {view.stray_instances} ELLA process(es) not under supervisor")
    if len(active) > 1 or instances > 1:
        reasons.append(f"ELLA runs on {', '.join(active)} ({instances} processes)")
        return Verdict(CONFLICT, active, tuple(reasons))
    if unknown:
        reasons.append(f"unreachable, state unknown: {', '.join(unknown)}")
        return Verdict(UNKNOWN, active, tuple(reasons))
    if not active:
        return Verdict(NONE_ACTIVE, active, tuple(reasons))
    return Verdict(ONE_ACTIVE, active, tuple(reasons))
