"""`check`: the procedure's debug checklist against the sandbox, healthy and broken."""

from __future__ import annotations

import datetime
import json

import pytest

from tests.conftest import run_cli
from tests.sandbox.conftest import api
from tests.sandbox_access import PROD_ROOT

pytestmark = pytest.mark.sandbox

API_LOG = f"{PROD_ROOT}/ella-prod/logs/api.log"


def check(output: str = "json") -> tuple[int, dict | str]:
    result = run_cli("--inventory", "sandbox", "--output", output, "check")
    assert result.stderr == "" or output == "text", result.stderr
    return result.returncode, json.loads(result.stdout) if output == "json" else result.stdout


def states(report: dict) -> dict[tuple[str, str | None], str]:
    return {(c["name"], c["host"]): c["state"] for c in report["checks"]}


def inject(sandbox, status: int, count: int) -> None:
    """Access-log lines as ELLA writes them, stamped now."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = f'{now} 10.213.22.1 "GET /api/v1/analyses/ HTTP/1.1" {status} 12ms'
    sandbox.exec("p22-ella-01", f"for i in $(seq {count}); do echo '{line}'; done >> {API_LOG}", user="ella")


# Load and memory are the machine's: the tests run beside other work (the molecule scenarios),
# so their state is asserted only where the test sets it up.
MACHINE = {"load", "memory"}


def worst_but_machine(report: dict) -> str:
    order = ["OK", "UNKNOWN", "WARN", "CRIT"]
    return max((c["state"] for c in report["checks"] if c["name"] not in MACHINE), key=order.index)


def test_check_healthy_then_user_errors_then_5xx_by_threshold(fresh):
    code, report = check()
    assert worst_but_machine(report) == "OK", [c for c in report["checks"] if c["state"] != "OK"]
    assert code == {"OK": 0, "WARN": 1, "UNKNOWN": 1, "CRIT": 2}[report["state"]]
    found = states(report)
    for host in ("p22-ella-01", "p22-ella-fo-01"):
        assert found[("disk backups", host)] == found[("disk shared storage", host)] == "OK"
        assert found[("load", host)] in ("OK", "WARN", "CRIT")
    assert found[("ella instances", None)] == found[("response /api/v1/config/", "p22-ella-01")] == "OK"
    assert report["measured"]["database"]["max_connections"] == 100

    # A toast shown to a user lands in uiexception: WARN with its message.
    api(fresh, "/api/v1/ui/exceptions/", {"user_id": 1, "message": "TypeError: allele is undefined",
                                          "location": "/workflows/analyses/1", "stacktrace": "at x"})
    code, report = check()
    assert code >= 1 and states(report)[("uiexceptions 24h", None)] == "WARN"
    assert worst_but_machine(report) == "WARN"
    assert "TypeError: allele is undefined" in json.dumps(report["checks"])

    # 5xx answers: 6 in ~310 requests is WARN (1-5 %), 36 in ~340 is CRIT (>= 5 %).
    inject(fresh, 200, 300)
    inject(fresh, 500, 6)
    code, report = check()
    server_errors = next(c for c in report["checks"] if c["name"] == "server errors")
    assert server_errors["state"] == "WARN", server_errors
    assert code >= 1
    inject(fresh, 500, 30)
    code, text = check("text")
    assert code == 2
    line = next(line for line in text.splitlines() if "server errors" in line)
    assert line.startswith("CRIT") and "36 of" in line


def test_check_with_ella_stopped_is_critical_for_monitoring(fresh):
    assert run_cli("--inventory", "sandbox", "stop").returncode == 0
    code, line = check("nagios")
    assert code == 2
    assert line.startswith("ELLA CRITICAL - ") and line.count("\n") == 1
    assert "no host runs ELLA" in line and " | " in line
    code, report = check()
    assert code == 2
    assert states(report)[("ella instances", None)] == states(report)[("api", None)] == "CRIT"


def test_check_bad_input(sandbox):
    assert run_cli("--output", "nagios", "status").returncode == 64
    assert run_cli("--inventory", "nowhere", "check").returncode == 64
