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
    assert verdict.reasons == ("ELLA runs on p22-ella-01, p22-ella-fo-01 (2 processes)",)


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


# ---- Database sessions (pg_stat_activity), mapped back to hosts by client address --------------

ADDRESSES = {"p22-ella-01": ["10.0.0.1"], "p22-ella-fo-01": ["10.0.0.2", "fe80::2"]}


def judge_with_sessions(reports: dict[str, dict[str, Any] | None], rows: list[dict[str, Any]] | None,
                        **kwargs: Any) -> guard.Verdict:
    """As the playbooks judge: each host's view carries the sessions from its addresses."""
    sessions = None if rows is None else guard.sessions_of(rows, ADDRESSES)
    views = [guard.host_view(name, r, sessions.by_host.get(name, 0) if sessions else 0)
             for name, r in reports.items()]
    return guard.judge(views, sessions=sessions, **kwargs)


def test_sessions_are_counted_per_host_by_every_address_of_the_host() -> None:
    rows = [{"client": "10.0.0.1"}, {"client": "10.0.0.2"}, {"client": "fe80::2"}, {"client": "10.0.0.1"},
            {"client": "192.168.9.9"}, {"client": None}, {"client": ""}, {}]
    assert guard.sessions_of(rows, ADDRESSES) == guard.Sessions(
        by_host={"p22-ella-01": 2, "p22-ella-fo-01": 2}, foreign={"192.168.9.9": 1}, local=3)


def test_a_second_ella_elsewhere_on_the_database_is_a_conflict_not_one_active() -> None:
    # ELLA runs on the primary; someone's copy of ELLA on a machine outside the inventory
    # uses the same database: that is two ELLAs.
    verdict = judge_with_sessions({"p22-ella-01": running(), "p22-ella-fo-01": report("STOPPED")},
                                  [{"client": "10.0.0.1"}, {"client": "10.9.9.9"}, {"client": "10.9.9.9"}])
    assert (verdict.state, verdict.exit_code) == (guard.CONFLICT, 2)
    assert verdict.reasons == ("sessions in ELLA's database from outside the inventory: 10.9.9.9 (2)",
                               "ELLA runs on p22-ella-01 (1 processes)")


def test_foreign_sessions_alone_are_a_conflict_even_with_nothing_running_here() -> None:
    verdict = judge_with_sessions({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": report("STOPPED")},
                                  [{"client": "10.9.9.9"}, {"client": "10.8.8.8"}])
    assert verdict.state == guard.CONFLICT
    assert verdict.reasons == ("sessions in ELLA's database from outside the inventory: 10.8.8.8 (1), 10.9.9.9 (1)",
                               "ELLA runs on no inventory host (0 processes)")


def test_sessions_of_a_host_without_an_ella_process_make_it_active() -> None:
    # The standby shows no process (e.g. ELLA runs there in a way the probe misses), but its
    # address holds sessions in ELLA's database: it counts as running ELLA.
    verdict = judge_with_sessions({"p22-ella-01": running(), "p22-ella-fo-01": report("STOPPED")},
                                  [{"client": "10.0.0.1"}, {"client": "10.0.0.2"}])
    assert (verdict.state, verdict.exit_code) == (guard.CONFLICT, 2)
    assert verdict.active_hosts == ("p22-ella-01", "p22-ella-fo-01")
    assert any(reason.startswith("p22-ella-fo-01: 1 session(s)") and "no ELLA process" in reason
               for reason in verdict.reasons), verdict.reasons


def test_sessions_alone_make_a_host_the_one_active() -> None:
    verdict = judge_with_sessions({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": report("STOPPED")},
                                  [{"client": "10.0.0.2"}])
    assert verdict.state == guard.ONE_ACTIVE and verdict.active_hosts == ("p22-ella-fo-01",)
    assert guard.HostView("h", True, db_sessions=1).active
    assert not guard.HostView("h", True).active


def test_sessions_of_the_running_host_itself_are_ella_and_not_named() -> None:
    verdict = judge_with_sessions({"p22-ella-01": running(), "p22-ella-fo-01": report("STOPPED")},
                                  [{"client": "10.0.0.1"}, {"client": "10.0.0.1"}, {"client": None}])
    assert verdict.state == guard.ONE_ACTIVE and verdict.reasons == ()


def test_unreadable_sessions_are_unknown_never_none_active() -> None:
    verdict = judge_with_sessions({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": report("STOPPED")}, None)
    assert (verdict.state, verdict.exit_code) == (guard.UNKNOWN, 2)
    assert verdict.reasons == ("ELLA's database sessions could not be read",)
    one = judge_with_sessions({"p22-ella-01": running(), "p22-ella-fo-01": report("STOPPED")}, None)
    assert one.state == guard.UNKNOWN and one.active_hosts == ("p22-ella-01",)


def test_no_sessions_and_nothing_running_is_none_active() -> None:
    verdict = judge_with_sessions({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": report("STOPPED")}, [])
    assert (verdict.state, verdict.exit_code, verdict.reasons) == (guard.NONE_ACTIVE, 1, ())


def test_two_processes_are_a_conflict_whatever_the_hosts_say() -> None:
    # A host whose report shows two processes under another program state still counts both.
    views = [guard.HostView("a", True, instances=1, program_state="STOPPED"),
             guard.HostView("b", True, instances=1, program_state="STOPPED")]
    assert guard.judge(views).state == guard.CONFLICT
    assert guard.judge([guard.HostView("a", True, instances=2, program_state="RUNNING")]).state == guard.CONFLICT
    assert guard.judge([guard.HostView("a", True, instances=1, program_state="RUNNING")]).state == guard.ONE_ACTIVE


def test_a_fenced_hosts_leftover_sessions_are_not_ella_running_and_are_named() -> None:
    # The fenced VM is off; its TCP sessions linger in pg_stat_activity until a start ends them.
    verdict = judge_with_sessions({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": None},
                                  [{"client": "10.0.0.2"}, {"client": "10.0.0.2"}], fenced=("p22-ella-fo-01",))
    assert (verdict.state, verdict.active_hosts) == (guard.NONE_ACTIVE, ())
    assert verdict.reasons == ("p22-ella-fo-01: unreachable, declared fenced by the operator; its 2 session(s) "
                               "in ELLA's database are ended before a start",)
    quiet = judge_with_sessions({"p22-ella-01": report("STOPPED"), "p22-ella-fo-01": None}, [],
                                fenced=("p22-ella-fo-01",))
    assert quiet.reasons == ("p22-ella-fo-01: unreachable, declared fenced by the operator",)


def test_fencing_does_not_hide_a_reachable_host() -> None:
    # --peer-fenced names a VM that is off; a host that answers is judged as it is.
    standby_running = report("RUNNING", process(2, supervised=True))
    verdict = judge_with_sessions({"p22-ella-01": running(), "p22-ella-fo-01": standby_running},
                                  [{"client": "10.0.0.2"}], fenced=("p22-ella-fo-01",))
    assert verdict.state == guard.CONFLICT
    reachable_sessions = judge_with_sessions({"p22-ella-01": running(), "p22-ella-fo-01": report("STOPPED")},
                                             [{"client": "10.0.0.2"}], fenced=("p22-ella-fo-01",))
    assert reachable_sessions.state == guard.CONFLICT
    assert not any("fenced" in reason for reason in verdict.reasons + reachable_sessions.reasons)


def test_a_fenced_host_that_is_not_named_among_unreachable_hosts_keeps_the_others_unknown() -> None:
    verdict = judge({"p22-ella-01": None, "p22-ella-fo-01": None}, fenced=("p22-ella-fo-01",))
    assert verdict.state == guard.UNKNOWN
    unreachable = [reason for reason in verdict.reasons if reason.startswith("unreachable, state unknown")]
    assert unreachable == ["unreachable, state unknown: p22-ella-01"]
    both = judge({"p22-ella-01": None, "p22-ella-fo-01": None})
    assert both.reasons == ("unreachable, state unknown: p22-ella-01, p22-ella-fo-01",)


def test_host_view_keeps_the_sessions_of_unreachable_and_reachable_hosts() -> None:
    assert guard.host_view("h", None, 3).db_sessions == 3
    assert guard.host_view("h", report("STOPPED"), 2).db_sessions == 2
    assert guard.host_view("h", {"processes": None, "program": None}) == guard.HostView("h", True)


def test_exit_codes_follow_the_state() -> None:
    assert [guard.Verdict(state, ()).exit_code for state in
            (guard.ONE_ACTIVE, guard.NONE_ACTIVE, guard.CONFLICT, guard.UNKNOWN)] == [0, 1, 2, 2]


def test_resolve_addresses_keeps_what_was_given_and_adds_what_names_resolve_to() -> None:
    found = guard.resolve_addresses({"a": "127.0.0.1", "b": ["localhost", None, ""], "c": None,
                                     "d": "no-such-host.invalid"})
    assert found["a"] == ["127.0.0.1"]
    assert "localhost" in found["b"] and "127.0.0.1" in found["b"]
    assert found["c"] == [] and found["d"] == ["no-such-host.invalid"]
    assert guard.resolve_addresses(None) == {}
