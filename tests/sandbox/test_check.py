"""`check`: the procedure's debug checklist against real ELLA in the sandbox, healthy and broken:
a toast a user saw (ELLA's uiexception table), 5xx answers at nginx while ELLA's API is down
inside its image, ELLA stopped, and logs in ELLA's own formats (local time, offsets)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


from tests.conftest import run_cli
from tests.sandbox.conftest import EllaUser
from tests.sandbox_access import PROD_ROOT


SOCKET = "/tmp/ella-supervisor/socket"


def check(output: str = "json") -> tuple[int, dict | str]:
    result = run_cli("--inventory", "sandbox", "--output", output, "check")
    assert result.stderr == "" or output == "text", result.stderr
    return result.returncode, json.loads(result.stdout) if output == "json" else result.stdout


def states(report: dict) -> dict[tuple[str, str | None], str]:
    return {(c["name"], c["host"]): c["state"] for c in report["checks"]}


# Load and memory are the machine's: the tests run beside other work, so their state is
# asserted only where the test sets it up.
MACHINE = {"load", "memory"}


def worst_but_machine(report: dict) -> str:
    order = ["OK", "UNKNOWN", "WARN", "CRIT"]
    return max((c["state"] for c in report["checks"] if c["name"] not in MACHINE), key=order.index)


def inner_supervisorctl(sandbox, command: str) -> None:
    """ELLA's own supervisord inside its image, over its socket in the host's /socket directory."""
    password = sandbox.exec("p22-ella-01", f"sed -n 's/^password *= *//p' {SOCKET}/supervisor.cfg | head -1",
                            user="ella").stdout.strip()
    sandbox.exec("p22-ella-01", f"supervisorctl -s unix://{SOCKET}/supervisor.sock -u ella -p '{password}' {command}",
                 user="ella")


def requests(sandbox, count: int) -> list[int]:
    codes = []
    for _ in range(count):
        try:
            with urllib.request.urlopen(f"http://{sandbox.address('p22-ella-01')}:3114/api/v1/config/",
                                        timeout=10) as answer:
                codes.append(answer.status)
        except urllib.error.HTTPError as error:
            codes.append(error.code)
    return codes


def test_check_healthy_then_a_users_toast_then_5xx_while_the_api_is_down(fresh):
    code, report = check()
    assert worst_but_machine(report) == "OK", [c for c in report["checks"] if c["state"] != "OK"]
    assert code == {"OK": 0, "WARN": 1, "UNKNOWN": 1, "CRIT": 2}[report["state"]]
    found = states(report)
    assert found[("ella instances", None)] == found[("response /api/v1/config/", "p22-ella-01")] == "OK"
    assert found[("tracebacks", "p22-ella-01")] == "OK"

    # A toast shown to a user, as ELLA's web UI reports it: WARN, with its message.
    EllaUser(fresh).call("/api/v1/ui/exceptionlog/", {"message": "TypeError: allele is undefined",
                                                      "location": "/workflows/analyses/1", "stacktrace": "at x",
                                                      "state": {}})
    code, report = check()
    assert code >= 1 and states(report)[("uiexceptions 24h", None)] == "WARN"
    assert "TypeError: allele is undefined" in json.dumps(report["checks"])

    # ELLA's API stops inside the image: nginx answers 502, and api.log says nothing of it.
    assert set(requests(fresh, 40)) == {200}
    inner_supervisorctl(fresh, "stop api")
    try:
        assert set(requests(fresh, 10)) == {502}
        code, text = check("text")
    finally:
        inner_supervisorctl(fresh, "start api")
    assert code == 2, text
    line = next(line for line in text.splitlines() if "server errors" in line)
    assert line.startswith("CRIT") and "10 of" in line, line


def test_check_with_ella_stopped_is_critical_for_monitoring(fresh):
    assert run_cli("--inventory", "sandbox", "stop").returncode == 0
    code, line = check("nagios")
    assert code == 2
    assert line.startswith("ELLA CRITICAL - ") and line.count("\n") == 1
    assert "no host runs ELLA" in line and " | " in line
    code, report = check()
    assert code == 2 and states(report)[("ella instances", None)] == "CRIT"


def test_tracebacks_in_ellas_local_time_log_are_counted_in_the_window(fresh):
    # A traceback line in ELLA's own format, stamped in the host's local time now, and one an
    # hour old: only the new one is in the 15 minutes.
    now, old = (time.strftime("%Y-%m-%d %H:%M:%S,000", time.localtime(t)) for t in (time.time(), time.time() - 3600))
    log = f"{PROD_ROOT}/ella-prod/logs/polling.log"
    fresh.exec("p22-ella-01", f"printf '%s\\n' '{old} [ERROR] old: x' 'Traceback (most recent call last):' "
                              f"'{now} [ERROR] __main__: boom' 'Traceback (most recent call last):' "
                              f"'  File \"/ella/src/api/polling.py\", line 1' >> {log}", user="ella")
    code, report = check()
    tracebacks = next(c for c in report["checks"] if c["name"] == "tracebacks" and c["host"] == "p22-ella-01")
    assert tracebacks["state"] == "WARN" and tracebacks["value"].startswith("1 "), tracebacks


def test_check_bad_input(sandbox):
    assert run_cli("--output", "nagios", "status").returncode == 64
    assert run_cli("--inventory", "nowhere", "check").returncode == 64
