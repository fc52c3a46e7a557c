"""The single-active rule (ella_deploy.guard) over reports shaped as ella_host_facts returns them."""

from __future__ import annotations

from typing import Any

import pytest

from ella_deploy import guard

RELEASES = "/ess/p22/data/durable/production/ella/archive/releases"


def process(pid: int, *, supervised: bool, version: str = "2.0.0") -> dict[str, Any]:
    image = f"{RELEASES}/ella-release-{version}.sif"
    return {
        "pid": pid,
        "image": image,
        "version": version,
        "supervised": supervised,
        "uptime_seconds": 120,
        "cmdline": f"singularity run {image}",
    }


def report(state: str = "STOPPED", *processes: dict[str, Any], supervisord: bool = True) -> dict[str, Any]:
    """An ella_host_facts report: supervisord up (or down), the program's state, processes."""
    running = state == "RUNNING"
    return {
        "hostname": "p22-ella-01",
        "supervisord": {
            "running": supervisord,
            "pid": 4242 if supervisord else None,
            "error": None if supervisord else "supervisord not running (FileNotFoundError)",
        },
        "program": {
            "name": "ella",
            "state": state if supervisord else "UNKNOWN",
            "pid": processes[0]["pid"] if running and processes else None,
            "uptime_seconds": 120 if running else None,
        },
        "processes": list(processes),
        "symlink": {
            "path": "/ess/p22/data/durable/production/ella/ella-prod/ella.sif",
            "target": "../archive/releases/ella-release-2.0.0.sif",
            "resolved": f"{RELEASES}/ella-release-2.0.0.sif",
            "exists": True,
            "version": "2.0.0",
        },
    }


def judge(reports: dict[str, dict[str, Any] | None], **kwargs: Any) -> guard.Verdict:
    return guard.judge([guard.host_view(name, r) for name, r in reports.items()], **kwargs)


def running() -> dict[str, Any]:
    return report("RUNNING", process(100, supervised=True))


def test_one_supervised_instance_is_one_active() -> None:
    verdict = judge({"p22-ella-01": running(), "p22-ella-fo-01": report("STOPPED")})
    assert (verdict.state, verdict.exit_code) == (guard.ONE_ACTIVE, 0)
    assert verdict.active_hosts == ("p22-ella-01",)
    assert verdict.reasons == ()


@pytest.mark.parametrize(
    "idle",
    [
        report("STOPPED"),
        report("EXITED"),
        report("FATAL"),
        # supervisord up, no ELLA program in its configuration
        report("ABSENT"),
        # supervisord down and nothing running
        report(supervisord=False),
    ],
    ids=["stopped", "exited", "fatal", "absent", "supervisord-down"],
)
def test_no_instance_anywhere_is_none_active(idle: dict[str, Any]) -> None:
    verdict = judge({"p22-ella-01": idle, "p22-ella-fo-01": report("STOPPED")})
    assert (verdict.state, verdict.exit_code) == (guard.NONE_ACTIVE, 1)
    assert verdict.active_hosts == ()


def test_two_running_hosts_are_a_conflict() -> None:
    verdict = judge({"p22-ella-01": running(), "p22-ella-fo-01": report("RUNNING", process(200, supervised=True))})
    assert (verdict.state, verdict.exit_code) == (guard.CONFLICT, 2)
    assert verdict.active_hosts == ("p22-ella-01", "p22-ella-fo-01")


def test_a_stray_on_another_host_is_a_conflict_named_in_the_reasons() -> None:
    stray_host = report("STOPPED", process(300, supervised=False), supervisord=False)
    verdict = judge({"p22-ella-01": running(), "p22-ella-fo-01": stray_host})
    assert (verdict.state, verdict.exit_code) == (guard.CONFLICT, 2)
    assert verdict.active_hosts == ("p22-ella-01", "p22-ella-fo-01")
    strays = [reason for reason in verdict.reasons if "not under supervisor" in reason]
    assert len(strays) == 1 and strays[0].startswith("p22-ella-fo-01"), verdict.reasons


def test_a_stray_beside_the_supervised_instance_is_a_conflict() -> None:
    # One host, two ELLA processes on the same database: still two instances.
    both = report("RUNNING", process(100, supervised=True), process(101, supervised=False))
    verdict = judge({"p22-ella-01": both, "p22-ella-fo-01": report("STOPPED")})
    assert (verdict.state, verdict.exit_code) == (guard.CONFLICT, 2)
    assert verdict.active_hosts == ("p22-ella-01",)
    assert any(reason.startswith("p22-ella-01") and "not under supervisor" in reason for reason in verdict.reasons)
    assert any("2 processes" in reason for reason in verdict.reasons), verdict.reasons


def test_a_lone_stray_is_the_one_instance_but_is_reported() -> None:
    stray_host = report("STOPPED", process(300, supervised=False), supervisord=False)
    verdict = judge({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": stray_host})
    assert verdict.state == guard.ONE_ACTIVE
    assert verdict.active_hosts == ("p22-ella-fo-01",)
    assert any(reason.startswith("p22-ella-fo-01") for reason in verdict.reasons)


def test_an_unreachable_host_makes_the_state_unknown() -> None:
    verdict = judge({"p22-ella-01": running(), "p22-ella-fo-01": None})
    assert (verdict.state, verdict.exit_code) == (guard.UNKNOWN, 2)
    assert verdict.active_hosts == ("p22-ella-01",)
    assert any("p22-ella-fo-01" in reason and "unreachable" in reason for reason in verdict.reasons)


def test_an_unreachable_host_is_never_taken_for_stopped() -> None:
    verdict = judge({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": None})
    assert (verdict.state, verdict.exit_code) == (guard.UNKNOWN, 2)


def test_a_host_declared_fenced_is_not_unknown_but_is_named() -> None:
    verdict = judge({"p22-ella-01": running(), "p22-ella-fo-01": None}, fenced=("p22-ella-fo-01",))
    assert (verdict.state, verdict.exit_code) == (guard.ONE_ACTIVE, 0)
    assert any("p22-ella-fo-01" in reason and "fenced" in reason for reason in verdict.reasons)


@pytest.mark.parametrize("state", ["STARTING", "BACKOFF", "RUNNING", "STOPPING"])
def test_supervisor_states_with_a_process_to_come_count_as_active(state: str) -> None:
    # No process found (yet, or any more): supervisor's state alone makes the host active.
    assert guard.host_view("p22-ella-fo-01", report(state)).active
    verdict = judge({"p22-ella-01": running(), "p22-ella-fo-01": report(state)})
    assert (verdict.state, verdict.exit_code) == (guard.CONFLICT, 2)
    alone = judge({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": report(state)})
    assert alone.state == guard.ONE_ACTIVE and alone.active_hosts == ("p22-ella-fo-01",)


def test_host_view_reads_the_report() -> None:
    both = report("RUNNING", process(100, supervised=True), process(101, supervised=False))
    assert guard.host_view("p22-ella-01", both) == guard.HostView(
        name="p22-ella-01", reachable=True, instances=2, stray_instances=1, program_state="RUNNING"
    )
    assert guard.host_view("p22-ella-01", None) == guard.HostView(name="p22-ella-01", reachable=False)
