"""`check`'s judgement of what Zabbix answered (`measured["zabbix"]` as the check playbook
publishes it): severities to states, hosts Zabbix does not watch, not configured, errors."""

from __future__ import annotations

from typing import Any

import pytest

from ella_deploy import check, zabbix

NOW = 1764100000.0


def answer(*problems: dict[str, Any], severity: list[int] | None = None, **hosts: dict[str, Any]) -> dict[str, Any]:
    known = {"p22-ella-01": {"found": True, "zabbix_host": "p22-ella-01", "monitored": True, "maintenance": False},
             "p22-ella-db": {"found": True, "zabbix_host": "p22-ella-db", "monitored": True, "maintenance": False},
             **hosts}
    return {"configured": True, "url": "https://zabbix.example/zabbix/api_jsonrpc.php", "version": "6.0.14",
            "severity": severity or [2, 4], "requested_hosts": list(known), "hosts": known, "problems": list(problems)}


def problem(severity: int, host: str = "p22-ella-01", **extra: Any) -> dict[str, Any]:
    return {"host": host, "name": f"problem of severity {severity}", "severity": severity, "since": NOW - 600,
            "acknowledged": False, "suppressed": False, "eventid": str(100 + severity), **extra}


def lines(asked: Any) -> list[tuple[str | None, str, str, str]]:
    return [(c.host, c.state, c.value, c.detail)
            for c in check.evaluate({"checked_at": NOW, "zabbix": asked}) if c.name == "zabbix"]


@pytest.mark.parametrize(("severity", "state", "word"), [
    (0, "OK", "Not classified"), (1, "OK", "Information"), (2, "WARN", "Warning"), (3, "WARN", "Average"),
    (4, "CRIT", "High"), (5, "CRIT", "Disaster")])
def test_severities_map_to_states(severity: int, state: str, word: str):
    assert lines(answer(problem(severity))) == [
        ("p22-ella-01", state, f"{word}: problem of severity {severity}", "since 10 min"),
        ("p22-ella-db", "OK", "no active problems", "")]


def test_the_inventory_moves_the_severity_limits():
    got = lines(answer(problem(2), problem(4, host="p22-ella-db"), severity=[3, 5]))
    assert [(host, state) for host, state, _, _ in got] == [("p22-ella-01", "OK"), ("p22-ella-db", "WARN")]
    threshold = {c.threshold for c in check.evaluate({"zabbix": answer(severity=[3, 5])}) if c.name == "zabbix"}
    assert threshold == {"warn ≥ Average, crit ≥ Disaster"}


def test_a_host_with_problems_lists_each_worst_first_and_says_acknowledged_or_suppressed():
    got = lines(answer(problem(2), problem(5, acknowledged=True), problem(4, suppressed=True)))
    assert got[:3] == [
        ("p22-ella-01", "CRIT", "Disaster: problem of severity 5", "since 10 min, acknowledged"),
        # A maintenance window expects it: listed, not alerted.
        ("p22-ella-01", "OK", "High: problem of severity 4", "since 10 min, suppressed (maintenance)"),
        ("p22-ella-01", "WARN", "Warning: problem of severity 2", "since 10 min"),
    ]


def test_hosts_zabbix_does_not_watch_are_warnings():
    got = lines(answer(**{"p22-ella-fo-01": {"found": False},
                          "p22-ella-db": {"found": True, "monitored": False, "zabbix_host": "db01"}}))
    assert [(host, state, value) for host, state, value, _ in got] == [
        ("p22-ella-01", "OK", "no active problems"),
        ("p22-ella-db", "WARN", "disabled in Zabbix: its problems are not seen"),
        ("p22-ella-fo-01", "WARN", "not in Zabbix: its problems are not seen")]


def test_a_host_in_maintenance_says_so():
    got = lines(answer(**{"p22-ella-db": {"found": True, "monitored": True, "maintenance": True}}))
    assert got[1] == ("p22-ella-db", "OK", "no active problems (in maintenance)", "")


def test_not_configured_is_one_ok_line_and_not_asked_is_unknown():
    assert lines({"configured": False}) == [(None, "OK", "Zabbix not configured", "")]
    assert [(h, s, v) for h, s, v, _ in lines(None)] == [(None, "UNKNOWN", "not asked")]
    # A measurement made without the Zabbix step (no key) says nothing about Zabbix.
    assert not [c for c in check.evaluate({"checked_at": NOW}) if c.name == "zabbix"]


def test_unreachable_or_refused_is_one_warn_line_naming_the_url():
    asked = {"configured": True, "url": "https://zabbix.example/zabbix/api_jsonrpc.php", "severity": [2, 4],
             "error": "Zabbix refused the API token (Invalid params. Not authorized.)", "refused": True}
    assert lines(asked) == [(None, "WARN", "Zabbix refused the API token (Invalid params. Not authorized.)",
                             "problems not known: https://zabbix.example/zabbix/api_jsonrpc.php")]
    checks = check.evaluate({"checked_at": NOW, "zabbix": asked})
    assert "zabbix: Zabbix refused the API token" in check.render_nagios([c for c in checks if c.name == "zabbix"])


def test_a_malformed_answer_is_unknown_never_a_crash():
    assert [(h, s) for h, s, _, _ in lines({"configured": True, "hosts": "?"})] == [(None, "UNKNOWN")]
    broken = answer({"host": "p22-ella-01", "name": "no severity"})
    assert [(h, s, v) for h, s, v, _ in lines(broken)] == [(None, "UNKNOWN", "not measured")]
    assert [(h, s) for h, s, _, _ in lines("yes")] == [(None, "UNKNOWN")]


def test_without_url_or_token_zabbix_is_not_asked():
    assert zabbix.measure("", "token", ["p22-ella-01"]) == {"configured": False}
    assert zabbix.measure("https://zabbix.example/zabbix", "  ", ["p22-ella-01"]) == {"configured": False}


def test_the_api_url_and_how_it_is_shown():
    assert zabbix.api_url("https://zabbix.example/zabbix/") == "https://zabbix.example/zabbix/api_jsonrpc.php"
    assert zabbix.api_url("https://z.example/api_jsonrpc.php") == "https://z.example/api_jsonrpc.php"
    assert zabbix.shown_url("https://user:secret@z.example:8443/zabbix/api_jsonrpc.php?x=1") == (
        "https://z.example:8443/zabbix/api_jsonrpc.php")
