"""`ella-deploy check` decisions (ella_deploy.check) over `measured` dicts shaped as the check playbook publishes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ella_deploy import check
from ella_deploy.errors import ExitCode

NOW = 1764100000.0
PRIMARY = "p22-ella-01"
STANDBY = "p22-ella-fo-01"
SHARED = "/ess/p22/data/durable/production/ella"


def healthy() -> dict[str, Any]:
    """A production environment where every check is OK."""
    host_facts = {
        "reachable": True, "cores": 2, "load": [0.42, 0.30, 0.25],
        "mem_total_kb": 8000000, "mem_available_kb": 5000000,
        "disks": [
            {"label": "shared storage", "path": SHARED, "free_bytes": 5.0e10, "total_bytes": 1.0e11},
            {"label": "backups", "path": f"{SHARED}/backups", "free_bytes": 4.0e11, "total_bytes": 1.0e12},
        ],
    }
    return {
        "environment": "prod",
        "checked_at": NOW,
        "thresholds": copy.deepcopy(check.DEFAULT_THRESHOLDS),
        "hosts": {PRIMARY: copy.deepcopy(host_facts), STANDBY: copy.deepcopy(host_facts)},
        "api": {
            "host": PRIMARY,
            "urls": [
                {"url": "http://127.0.0.1:3114/api/v1/config/", "times_ms": [12.1, 9.8, 11.0],
                 "statuses": [200, 200, 200], "errors": []},
                {"url": "http://127.0.0.1:3114/", "times_ms": [5.0, 6.0, 7.0],
                 "statuses": [200, 200, 200], "errors": []},
            ],
            "log": {"file": f"{SHARED}/ella-prod/logs/api.log", "minutes": 15, "requests": 120, "server_errors": 0,
                    "tracebacks": 0, "newest_server_error": None},
        },
        "database": {
            "error": None, "connections": 5, "max_connections": 100,
            "long_running": [{"pid": 123, "seconds": 12.5, "state": "active", "query": "SELECT 1"}],
            "waiting_locks": 0, "size_bytes": 123456789, "uiexceptions_24h": 0, "uiexceptions_newest": [],
        },
        "guard": {"verdict": "ONE ACTIVE", "active": [PRIMARY], "unknown": [], "message": f"ELLA runs on {PRIMARY}"},
        "deploys": [
            {"kind": "backup", "outcome": "success", "finished": NOW - 50000, "operator": "bob", "host": PRIMARY},
            {"kind": "release", "outcome": "success", "from_version": "2.0.0", "to_version": "2.1.0",
             "finished": str(NOW - 10000), "operator": "alice", "host": PRIMARY},
        ],
    }


def find(checks: list[check.Check], name: str, host: str | None = None) -> check.Check:
    matches = [c for c in checks if c.name == name and (host is None or c.host == host)]
    assert len(matches) == 1, (name, host, [(c.name, c.host) for c in checks])
    return matches[0]


def evaluated(changes: dict[str, Any] | None = None, **paths: Any) -> list[check.Check]:
    """The checks of the healthy environment with values replaced: path "a.b.0.c" -> value."""
    measured = healthy()
    for path, value in {**(changes or {}), **paths}.items():
        *parents, last = path.split(".")
        target: Any = measured
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return check.evaluate(measured)


# --- the healthy environment ---------------------------------------------------------------------


def test_healthy_environment_is_all_ok() -> None:
    checks = check.evaluate(healthy())
    assert [c for c in checks if c.state != "OK"] == []
    assert check.overall(checks) == "OK"
    assert check.exit_code(checks, nagios=True) == 0
    assert check.exit_code(checks, nagios=False) == ExitCode.OK
    names = [(c.name, c.host) for c in checks]
    assert len(names) == len(set(names))
    for host in (PRIMARY, STANDBY):
        for name in ("host reachable", "load", "memory", "disk shared storage", "disk backups"):
            assert (name, host) in names
    for name in ("ella instances", "database connections", "long queries", "lock waits", "database size",
                 "uiexceptions 24h", "recent deploys"):
        assert (name, None) in names
    for name in ("response /api/v1/config/", "response /", "server errors", "request rate", "tracebacks"):
        assert (name, PRIMARY) in names


def test_healthy_values_are_described() -> None:
    checks = check.evaluate(healthy())
    load = find(checks, "load", PRIMARY)
    assert load.value == "load 0.42 on 2 cores = 0.21/core"
    assert load.threshold == "warn ≥ 1.0, crit ≥ 2.0"
    assert load.perf[f"load_{PRIMARY}"].value == pytest.approx(0.21)
    memory = find(checks, "memory", PRIMARY)
    assert memory.value.startswith("62.5% available")
    assert memory.threshold == "warn < 15%, crit < 5%"
    disk = find(checks, "disk shared storage", PRIMARY)
    assert disk.value == "50.0% free (50.0 GB of 100.0 GB)"
    assert disk.detail == SHARED
    assert find(checks, "database connections").value == "5.0% (5 of 100)"
    assert find(checks, "database size").value == "123.5 MB"
    assert find(checks, "database size").threshold == "none (reported only)"
    response = find(checks, "response /api/v1/config/")
    assert response.value == "median 11.0 ms, worst 12.1 ms"
    assert find(checks, "server errors").value == "0.0% (0 of 120 requests in 15 min)"
    assert find(checks, "request rate").value == "8.0/min (120 in 15 min)"
    assert find(checks, "long queries").value == "0 over 300 s, worst 12.5 s"
    deploys = find(checks, "recent deploys")
    assert deploys.value == "release 2.1.0 by alice 2 h ago"


# --- thresholds at their boundaries --------------------------------------------------------------


@pytest.mark.parametrize(("load1", "state"), [
    (1.98, "OK"), (2.0, "WARN"), (2.02, "WARN"), (3.98, "WARN"), (4.0, "CRIT"), (4.5, "CRIT"),
])
def test_load_per_core_boundaries(load1: float, state: str) -> None:
    assert find(evaluated({f"hosts.{PRIMARY}.load.0": load1}), "load", PRIMARY).state == state


@pytest.mark.parametrize(("available_kb", "state"), [
    (1200800, "OK"), (1200000, "OK"), (1199200, "WARN"), (400000, "WARN"), (399200, "CRIT"),
])
def test_memory_available_boundaries(available_kb: int, state: str) -> None:
    # 8 000 000 kB total: 15% = 1 200 000 kB, 5% = 400 000 kB; "below" is strict.
    assert find(evaluated({f"hosts.{PRIMARY}.mem_available_kb": available_kb}), "memory", PRIMARY).state == state


@pytest.mark.parametrize(("free", "state"), [(1.6e10, "OK"), (1.5e10, "OK"), (1.4e10, "WARN"), (5e9, "WARN"),
                                             (4.9e9, "CRIT")])
def test_disk_free_boundaries(free: float, state: str) -> None:
    # Of the 100 GB disk: 15 GB (15%) is not below 15, 5 GB (5%) is below 15 but not below 5.
    result = find(evaluated({f"hosts.{STANDBY}.disks.0.free_bytes": free}), "disk shared storage", STANDBY)
    assert result.state == state
    assert f"{free / 1e9:.1f} GB" in result.value


@pytest.mark.parametrize(("connections", "state"), [(69, "OK"), (70, "WARN"), (71, "WARN"), (89, "WARN"),
                                                    (90, "CRIT"), (91, "CRIT")])
def test_database_connection_boundaries(connections: int, state: str) -> None:
    result = find(evaluated({"database.connections": connections}), "database connections")
    assert result.state == state
    assert result.value.endswith(f"({connections} of 100)")


@pytest.mark.parametrize(("seconds", "state", "over"), [
    (299.9, "OK", 0), (300, "OK", 0), (300.5, "WARN", 1), (1800, "WARN", 1), (1800.1, "CRIT", 1),
])
def test_long_query_boundaries(seconds: float, state: str, over: int) -> None:
    query = {"pid": 77, "seconds": seconds, "state": "active", "query": "SELECT * FROM analysis " + "x" * 80}
    result = find(evaluated({"database.long_running": [query, {"pid": 1, "seconds": 5, "query": "x"}]}),
                  "long queries")
    assert result.state == state
    assert result.value == f"{over} over 300 s, worst {check._n(float(seconds))} s"
    if over:
        assert result.detail == "pid 77 (active): SELECT * FROM analysis " + "x" * 37 + "…"
    assert result.perf["long_queries"].value == over


@pytest.mark.parametrize(("waiting", "state"), [(0, "OK"), (1, "WARN"), (9, "WARN"), (10, "CRIT")])
def test_lock_wait_boundaries(waiting: int, state: str) -> None:
    assert find(evaluated({"database.waiting_locks": waiting}), "lock waits").state == state


def test_database_size_is_reported_only_unless_thresholds_are_set() -> None:
    assert find(evaluated({"database.size_bytes": 9e15}), "database size").state == "OK"
    limited = {"thresholds.db_size_bytes": [1e8, 1e9]}
    assert find(evaluated(limited), "database size").state == "WARN"
    assert find(evaluated({**limited, "database.size_bytes": 99_999_999}), "database size").state == "OK"
    result = find(evaluated({**limited, "database.size_bytes": 1_000_000_000}), "database size")
    assert result.state == "CRIT"
    assert result.threshold == "warn ≥ 100.0 MB, crit ≥ 1.0 GB"


@pytest.mark.parametrize(("median_ms", "worst_ms", "state"), [
    (999, 999, "OK"), (1000, 1000, "WARN"), (2999, 2999, "WARN"), (3000, 3000, "CRIT"),
    (10, 2999, "OK"), (10, 3000, "WARN"), (10, 9999, "WARN"), (10, 10000, "CRIT"),
])
def test_response_time_boundaries(median_ms: float, worst_ms: float, state: str) -> None:
    times = [median_ms, median_ms, worst_ms]
    result = find(evaluated({"api.urls.0.times_ms": times}), "response /api/v1/config/", PRIMARY)
    assert result.state == state
    assert result.value == f"median {check._n(float(median_ms))} ms, worst {check._n(float(worst_ms))} ms"


@pytest.mark.parametrize(("requests", "state"), [(8985, "OK"), (9000, "WARN"), (17985, "WARN"), (18000, "CRIT")])
def test_request_rate_boundaries(requests: int, state: str) -> None:
    # 15 minutes: 600/min = 9000 requests, 1200/min = 18000.
    assert find(evaluated({"api.log.requests": requests}), "request rate").state == state


@pytest.mark.parametrize(("count", "state"), [(0, "OK"), (1, "WARN"), (9, "WARN"), (10, "CRIT")])
def test_tracebacks(count: int, state: str) -> None:
    result = find(evaluated({"api.log.tracebacks": count}), "tracebacks", PRIMARY)
    assert result.state == state
    assert result.value == f"{count} in 15 min"


def test_uiexceptions_count_and_newest_message() -> None:
    newest = [
        {"time": "2026-11-25T09:00:00+00:00", "message": "ReferenceError: older"},
        {"time": "2026-11-25T10:00:00+00:00", "message": "TypeError: x is undefined " + "y" * 100},
    ]
    result = find(evaluated({"database.uiexceptions_24h": 2, "database.uiexceptions_newest": newest}),
                  "uiexceptions 24h")
    assert result.state == "WARN"
    assert result.value == "2 in 24 h"
    message = result.detail.split(": ", 1)[1]
    assert result.detail.startswith("newest 2026-11-25T10:00:00+00:00: TypeError: x is undefined")
    assert len(message) == 81 and message.endswith("…")
    assert find(evaluated({"database.uiexceptions_24h": 19}), "uiexceptions 24h").state == "WARN"
    assert find(evaluated({"database.uiexceptions_24h": 20}), "uiexceptions 24h").state == "CRIT"


# --- server errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("errors", "requests", "state"), [
    (1, 101, "OK"), (1, 100, "WARN"), (4, 100, "WARN"), (5, 100, "CRIT"), (3, 120, "WARN"), (30, 120, "CRIT"),
])
def test_server_errors_by_percent(errors: int, requests: int, state: str) -> None:
    line = '2026-11-25 10:00:01 "GET /api/v1/analyses/ HTTP/1.1" 500'
    result = find(evaluated({"api.log.server_errors": errors, "api.log.requests": requests,
                             "api.log.newest_server_error": line}), "server errors", PRIMARY)
    assert result.state == state
    assert f"({errors} of {requests} requests in 15 min)" in result.value
    assert result.detail == line


def test_server_errors_min_suppresses_few_errors() -> None:
    few = {"api.log.server_errors": 3, "api.log.requests": 10, "thresholds.server_errors_min": 5}
    result = find(evaluated(few), "server errors")
    assert result.state == "OK"
    assert result.value == "30.0% (3 of 10 requests in 15 min)"
    assert "fewer than 5" in result.detail
    assert find(evaluated({**few, "api.log.server_errors": 5}), "server errors").state == "CRIT"


def test_server_errors_without_requests_are_critical() -> None:
    result = find(evaluated({"api.log.server_errors": 2, "api.log.requests": 0}), "server errors")
    assert result.state == "CRIT"


# --- failures ------------------------------------------------------------------------------------


def test_unreachable_peer() -> None:
    checks = evaluated({f"hosts.{STANDBY}": {"reachable": False, "error": "ssh: connect to host x timed out"},
                        "guard": {"verdict": "UNKNOWN", "active": [PRIMARY], "unknown": [STANDBY],
                                  "message": f"unreachable, state unknown: {STANDBY}"}})
    reachable = find(checks, "host reachable", STANDBY)
    assert (reachable.state, reachable.value) == ("CRIT", "unreachable")
    assert reachable.detail == "ssh: connect to host x timed out"
    assert [c.name for c in checks if c.host == STANDBY] == ["host reachable"]
    instances = find(checks, "ella instances")
    assert instances.state == "WARN"
    assert instances.value == f"UNKNOWN: cannot rule out a second instance on {STANDBY}"
    assert instances.detail == f"unreachable, state unknown: {STANDBY}"
    assert check.overall(checks) == "CRIT"


@pytest.mark.parametrize(("guard", "state"), [
    ({"verdict": "ONE ACTIVE", "active": [PRIMARY], "unknown": []}, "OK"),
    ({"verdict": "NONE ACTIVE", "active": [], "unknown": []}, "CRIT"),
    ({"verdict": "CONFLICT", "active": [PRIMARY, STANDBY], "unknown": []}, "CRIT"),
    ({"verdict": "UNKNOWN", "active": [PRIMARY], "unknown": [STANDBY]}, "WARN"),
    ({"verdict": "UNKNOWN", "active": [], "unknown": [PRIMARY, STANDBY]}, "CRIT"),
    ({"verdict": "MAYBE", "active": [], "unknown": []}, "UNKNOWN"),
    (None, "UNKNOWN"),
])
def test_guard_verdicts(guard: dict[str, Any] | None, state: str) -> None:
    assert find(evaluated({"guard": guard}), "ella instances").state == state


def test_conflict_names_the_hosts() -> None:
    result = find(evaluated({"guard": {"verdict": "CONFLICT", "active": [PRIMARY, STANDBY], "unknown": [],
                                       "message": "two"}}), "ella instances")
    assert result.value == f"CONFLICT: more than one host runs ELLA against one database ({PRIMARY}, {STANDBY})"
    assert result.detail == "two"


def test_api_stopped() -> None:
    checks = evaluated({"api": None, "guard": {"verdict": "NONE ACTIVE", "active": [], "unknown": [],
                                               "message": "ELLA runs nowhere"}})
    api = find(checks, "api")
    assert (api.state, api.value) == ("CRIT", "no host runs ELLA")
    assert find(checks, "ella instances").state == "CRIT"
    assert not [c for c in checks if c.name.startswith("response") or c.name == "server errors"]
    assert check.overall(checks) == "CRIT"
    assert check.exit_code(checks, nagios=True) == 2
    assert check.exit_code(checks, nagios=False) == ExitCode.FAILED
    line = check.render_nagios(checks)
    assert line.startswith("ELLA CRITICAL - 2 critical: ")
    assert "api: no host runs ELLA" in line
    assert "ella instances: NONE ACTIVE: ELLA is down" in line


def test_refused_url() -> None:
    refused = {"url": "http://127.0.0.1:3114/api/v1/config/", "times_ms": [], "statuses": [],
               "errors": ["connection refused", "connection refused", "connection refused"]}
    checks = evaluated({"api.urls.0": refused})
    result = find(checks, "response /api/v1/config/", PRIMARY)
    assert result.state == "CRIT"
    assert result.value == "3 of 3 failed: connection refused"
    assert result.perf == {}
    assert find(checks, "response /").state == "OK"
    line = check.render_nagios(checks)
    assert f"response /api/v1/config/ on {PRIMARY}: 3 of 3 failed: connection refused" in line


def test_non_2xx_status_is_critical_and_named() -> None:
    result = find(evaluated({"api.urls.0.statuses": [200, 502, 502]}), "response /api/v1/config/")
    assert result.state == "CRIT"
    assert result.value == "HTTP 502 on 2 of 3"
    assert result.detail == "median 11.0 ms, worst 12.1 ms"


def test_one_failed_request_among_fast_ones_is_critical() -> None:
    result = find(evaluated({"api.urls.0.statuses": [200, 200], "api.urls.0.times_ms": [10.0, 11.0],
                             "api.urls.0.errors": ["timed out after 10 s"]}), "response /api/v1/config/")
    assert result.state == "CRIT"
    assert result.value == "1 of 3 failed: timed out after 10 s"


def test_database_error_replaces_the_database_checks() -> None:
    checks = evaluated({"database": {"error": "connection to server on socket failed: FATAL: too many clients"}})
    database = find(checks, "database")
    assert database.state == "CRIT"
    assert database.value == "connection to server on socket failed: FATAL: too many clients"
    assert "too many clients" in database.detail
    assert not [c for c in checks if c.name in ("database connections", "long queries", "lock waits")]


# --- missing values ------------------------------------------------------------------------------


LOG = [("server errors", PRIMARY), ("request rate", PRIMARY), ("tracebacks", PRIMARY)]


@pytest.mark.parametrize(("changes", "unknown"), [
    ({f"hosts.{PRIMARY}.load": None}, [("load", PRIMARY)]),
    ({f"hosts.{PRIMARY}.load": []}, [("load", PRIMARY)]),
    ({f"hosts.{PRIMARY}.cores": 0}, [("load", PRIMARY)]),
    ({f"hosts.{PRIMARY}.cores": "two"}, [("load", PRIMARY)]),
    ({f"hosts.{PRIMARY}.mem_available_kb": None}, [("memory", PRIMARY)]),
    ({f"hosts.{PRIMARY}.mem_total_kb": 0}, [("memory", PRIMARY)]),
    ({f"hosts.{PRIMARY}.disks.0.free_bytes": None}, [("disk shared storage", PRIMARY)]),
    ({f"hosts.{PRIMARY}.disks": None}, [("disk", PRIMARY)]),
    ({f"hosts.{PRIMARY}.reachable": None}, [("host reachable", PRIMARY)]),
    ({"database.connections": None}, [("database connections", None)]),
    ({"database.max_connections": 0}, [("database connections", None)]),
    ({"database.long_running": None}, [("long queries", None)]),
    ({"database.waiting_locks": "?"}, [("lock waits", None)]),
    ({"database.size_bytes": None}, [("database size", None)]),
    ({"database.uiexceptions_24h": None}, [("uiexceptions 24h", None)]),
    ({"database": None}, [("database", None)]),
    ({"api.urls.0.times_ms": None, "api.urls.0.statuses": None}, [("response /api/v1/config/", PRIMARY)]),
    ({"api.urls": []}, [("response", PRIMARY)]),
    ({"api.log.requests": None}, [("server errors", PRIMARY), ("request rate", PRIMARY)]),
    ({"api.log.server_errors": "lots"}, [("server errors", PRIMARY)]),
    ({"api.log.minutes": 0}, LOG),
    ({"api.log": None}, LOG),
    ({"api.log.tracebacks": None}, [("tracebacks", PRIMARY)]),
    ({"deploys": None}, [("recent deploys", None)]),
    ({"deploys.1.finished": None}, [("recent deploys", None)]),
    ({"guard": None}, [("ella instances", None)]),
    ({"thresholds.load_per_core": "high"}, [("load", PRIMARY), ("load", STANDBY)]),
    ({"thresholds.tracebacks": [1, "many"]}, [("tracebacks", PRIMARY)]),
])
def test_missing_value_is_unknown_with_reason(changes: dict[str, Any], unknown: list[tuple[str, str | None]]) -> None:
    checks = evaluated(changes)
    for name, host in unknown:
        result = find(checks, name, host)
        assert result.state == "UNKNOWN"
        assert result.detail
    others = [c for c in checks if (c.name, c.host) not in unknown]
    assert all(c.state == "OK" for c in others), [c for c in others if c.state != "OK"]
    assert check.overall(checks) == "UNKNOWN"
    assert check.exit_code(checks, nagios=True) == 3
    assert check.exit_code(checks, nagios=False) == ExitCode.DEGRADED


@pytest.mark.parametrize("section", ["hosts", "api.log", "database", "guard", "thresholds", "checked_at"])
def test_missing_sections_do_not_crash(section: str) -> None:
    measured = healthy()
    if "." in section:
        measured["api"]["log"] = None
    else:
        del measured[section]
    checks = check.evaluate(measured)
    assert checks
    assert check.overall(checks) in ("OK", "UNKNOWN")
    assert "\n" not in check.render_nagios(checks)
    json.dumps(check.as_dict(checks, measured))


def test_empty_or_garbage_measurement_is_unknown_or_critical() -> None:
    checks = check.evaluate({})
    assert check.overall(checks) == "CRIT"  # no API measured means no host runs ELLA
    assert find(checks, "host reachable").state == "UNKNOWN"
    assert find(checks, "database").state == "UNKNOWN"
    checks = evaluated({f"hosts.{PRIMARY}": "garbage", f"hosts.{PRIMARY}x": {"reachable": True, "disks": [7]},
                        "api.urls": [None], "deploys": [None, "x"]})
    assert find(checks, "host reachable", PRIMARY).state == "UNKNOWN"
    assert find(checks, "memory", f"{PRIMARY}x").state == "UNKNOWN"
    assert find(checks, "recent deploys").value == "no deploys on record"
    assert check.overall([]) == "UNKNOWN"


# --- recent deploys ------------------------------------------------------------------------------


def test_recent_release_warns() -> None:
    release = {"kind": "release", "outcome": "success", "version": "2.1.0", "finished": NOW - 35 * 60,
               "operator": "alice", "host": PRIMARY}
    result = find(evaluated({"deploys": [release]}), "recent deploys")
    assert result.state == "WARN"
    assert result.value == "release 2.1.0 by alice 35 min ago"
    assert result.detail == f"on {PRIMARY}: did a recent update cause this?"


@pytest.mark.parametrize(("age_hours", "state"), [(1.99, "WARN"), (2.0, "OK"), (30, "OK")])
def test_recent_deploy_boundary(age_hours: float, state: str) -> None:
    restart = {"kind": "restart", "outcome": "success", "finished": NOW - age_hours * 3600, "operator": "bob"}
    assert find(evaluated({"deploys": [*healthy()["deploys"], restart]}), "recent deploys").state == state


def test_old_release_is_ok_and_named() -> None:
    result = find(evaluated({"deploys.1.finished": NOW - 3 * 86400}), "recent deploys")
    assert result.state == "OK"
    assert result.value == "release 2.1.0 by alice 3 days ago"


def test_kinds_that_change_nothing_do_not_count() -> None:
    backup = {"kind": "backup", "outcome": "success", "finished": NOW - 60, "operator": "cron"}
    result = find(evaluated({"deploys": [*healthy()["deploys"], backup]}), "recent deploys")
    assert result.state == "OK"
    assert result.value.startswith("release 2.1.0")


def test_rolled_back_last_release_warns() -> None:
    rolled_back = {"kind": "release", "outcome": "rolled_back", "to_version": "2.2.0",
                   "finished": NOW - 5 * 86400, "operator": "alice", "host": PRIMARY}
    restart = {"kind": "restart", "outcome": "success", "finished": NOW - 4 * 86400, "operator": "bob"}
    result = find(evaluated({"deploys": [*healthy()["deploys"], rolled_back, restart]}), "recent deploys")
    assert result.state == "WARN"
    assert result.value == "last release 2.2.0 rolled_back"
    assert result.detail == f"release 2.2.0 by alice 5 days ago on {PRIMARY}"
    failed_recently = {**rolled_back, "outcome": "failed", "finished": NOW - 600}
    result = find(evaluated({"deploys": [failed_recently]}), "recent deploys")
    assert result.state == "WARN"
    assert result.value == "release 2.2.0 by alice 10 min ago, last release 2.2.0 failed"


def test_no_deploys_on_record() -> None:
    result = find(evaluated({"deploys": []}), "recent deploys")
    assert (result.state, result.value) == ("OK", "no deploys on record")


# --- output --------------------------------------------------------------------------------------


def test_nagios_all_ok() -> None:
    checks = check.evaluate(healthy())
    line = check.render_nagios(checks)
    assert "\n" not in line
    text, perfdata = line.split(" | ")
    assert text == f"ELLA OK - {len(checks)} checks ok"
    labels = [item.split("=")[0] for item in perfdata.split(" ")]
    assert f"load_{PRIMARY}" in labels and "db_size" in labels and "response_api_v1_config_median" in labels
    assert all(" " not in label and "'" not in label for label in labels)
    assert f"load_{PRIMARY}=0.21;1.0;2.0" in perfdata.split(" ")
    assert f"memory_{PRIMARY}=62.5%;15:;5:" in perfdata.split(" ")
    assert f"disk_shared_storage_{PRIMARY}=50.0%;15:;5:" in perfdata.split(" ")
    assert "db_size=123456789B" in perfdata.split(" ")
    assert "response_api_v1_config_median=11.0ms;1000;3000" in perfdata.split(" ")


@pytest.mark.parametrize(("changes", "word", "code"), [
    ({}, "OK", 0),
    ({"database.waiting_locks": 1}, "WARNING", 1),
    ({"database.waiting_locks": 10}, "CRITICAL", 2),
    ({"database.waiting_locks": None}, "UNKNOWN", 3),
    ({"database.waiting_locks": None, "api.log.tracebacks": 1}, "WARNING", 1),
])
def test_nagios_state_word_and_exit_code(changes: dict[str, Any], word: str, code: int) -> None:
    checks = evaluated(changes)
    assert check.render_nagios(checks).startswith(f"ELLA {word} - ")
    assert check.exit_code(checks, nagios=True) == code
    assert check.exit_code(checks, nagios=False) == {0: 0, 1: 1, 2: 2, 3: 1}[code]


def test_nagios_lists_most_severe_first_and_stays_one_line() -> None:
    checks = evaluated({
        "database.waiting_locks": 1,
        "api.urls.0.errors": ["refused"], "api.urls.0.statuses": [], "api.urls.0.times_ms": [],
        f"hosts.{STANDBY}": {"reachable": False, "error": "ssh: timed out\nsecond line"},
        "database.long_running": [{"pid": 9, "seconds": 400, "query": "SELECT a || b\nFROM t"}],
        "database.size_bytes": None,
    })
    line = check.render_nagios(checks)
    assert "\n" not in line
    text, perfdata = line.split(" | ")
    assert text.startswith("ELLA CRITICAL - 2 critical, 2 warning, 1 unknown: ")
    items = text.split(": ", 1)[1]
    assert items.index("host reachable") < items.index("lock waits") < items.index("database size")
    assert items.index(f"response /api/v1/config/ on {PRIMARY}") < items.index("long queries")
    assert "|" not in text
    assert "long_query_worst=400.0s;300;1800" in perfdata.split(" ")


def test_text_output_has_a_header_and_one_line_per_check() -> None:
    measured = healthy()
    measured["hosts"][STANDBY] = {"reachable": False, "error": "ssh: connect\ntimed out"}
    checks = check.evaluate(measured)
    lines = check.render_text(checks, measured).split("\n")
    assert lines[0] == "ELLA prod check at 2025-11-25 19:46:40 UTC: CRIT"
    assert len(lines) == len(checks) + 1
    for line, item in zip(lines[1:], checks, strict=True):
        assert line.startswith(item.state)
        assert item.name in line and f"({item.threshold})" in line
    # Columns are aligned: every name starts at the same offset.
    offsets = {line.index(item.name) for line, item in zip(lines[1:], checks, strict=True)}
    assert offsets == {len("CRIT") + 2}
    assert hash(checks[0]) == hash(check.evaluate(measured)[0])
    unreachable = next(line for line in lines if line.startswith("CRIT") and STANDBY in line)
    assert unreachable.endswith("ssh: connect timed out")


def test_as_dict_is_json() -> None:
    measured = healthy()
    checks = check.evaluate(measured)
    data = json.loads(json.dumps(check.as_dict(checks, measured)))
    assert data["state"] == "OK"
    assert data["measured"] == json.loads(json.dumps(measured))
    load = next(c for c in data["checks"] if c["name"] == "load" and c["host"] == PRIMARY)
    assert load["perf"][f"load_{PRIMARY}"] == {"value": 0.21, "uom": "", "warn": "1.0", "crit": "2.0"}
