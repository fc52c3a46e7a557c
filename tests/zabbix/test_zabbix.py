"""`check`'s Zabbix lines against a real Zabbix 6.0: a problem raised with zabbix_sender is
CRIT or WARN by its severity and OK once cleared; a refused token or an unreachable Zabbix
is one WARN line; the check playbook asks Zabbix with a vaulted token that never reaches
ansible-runner's artifacts; a site without Zabbix settings gets "Zabbix not configured"."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ella_deploy import check, runner
from ella_deploy import zabbix as zabbix_api
from tests.zabbix.conftest import TIMINGS, Zabbix

pytestmark = pytest.mark.zabbix

ELLA_HOSTS = ["p22-ella-01", "p22-ella-fo-01"]
DB_HOST = "p22-ella-db"


def zabbix_lines(asked: dict[str, Any]) -> list[check.Check]:
    """The lines `check` prints for what Zabbix answered (check.evaluate, as `check` calls it)."""
    return [c for c in check.evaluate({"checked_at": time.time(), "zabbix": asked}) if c.name == "zabbix"]


def by_host(lines: list[check.Check]) -> dict[str | None, tuple[str, str]]:
    assert len({line.host for line in lines}) == len(lines), lines
    return {line.host: (line.state, line.value) for line in lines}


def ask_until(zabbix: Zabbix, done: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        asked = zabbix_api.measure(zabbix.server.url, zabbix.token, [*ELLA_HOSTS, DB_HOST])
        if done(asked) or time.monotonic() > deadline:
            return asked
        time.sleep(0.25)


def clear(zabbix: Zabbix) -> None:
    for host in zabbix.hosts:
        zabbix.server.send(host, 0)
    assert ask_until(zabbix, lambda asked: asked.get("problems") == [])["problems"] == []


def test_a_problem_is_crit_or_warn_by_its_severity_and_ok_once_cleared(zabbix: Zabbix):
    quiet = zabbix_api.measure(zabbix.server.url, zabbix.token, [*ELLA_HOSTS, DB_HOST])
    assert quiet["version"].startswith("6.0.")
    assert by_host(zabbix_lines(quiet)) == {host: ("OK", "no active problems") for host in [*ELLA_HOSTS, DB_HOST]}

    try:
        sent = time.monotonic()
        for host in zabbix.hosts:
            zabbix.server.send(host, 1)
        raised = ask_until(zabbix, lambda asked: len(asked.get("problems") or []) == 3)
        TIMINGS["zabbix_sender -> problem seen by problem.get (3 hosts)"] = time.monotonic() - sent
        lines = zabbix_lines(raised)
        assert by_host(lines) == {
            "p22-ella-01": ("CRIT", "High: ELLA test problem on p22-ella-01"),
            "p22-ella-fo-01": ("OK", "Information: ELLA test problem on p22-ella-fo-01"),
            "p22-ella-db": ("WARN", "Average: ELLA test problem on p22-ella-db"),
        }
        assert {line.threshold for line in lines} == {"warn ≥ Warning, crit ≥ High"}
        assert all(line.detail.startswith("since ") for line in lines)
        assert check.exit_code(lines, nagios=False) == 2
        assert check.render_nagios(lines).startswith(
            "ELLA CRITICAL - 1 critical, 1 warning: zabbix on p22-ella-01: High: ELLA test problem on p22-ella-01; "
            "zabbix on p22-ella-db: Average: ELLA test problem on p22-ella-db")
    finally:
        cleared = time.monotonic()
        clear(zabbix)
        TIMINGS["value 0 -> problems resolved (3 hosts)"] = time.monotonic() - cleared
    after = zabbix_api.measure(zabbix.server.url, zabbix.token, [*ELLA_HOSTS, DB_HOST])
    assert by_host(zabbix_lines(after)) == {host: ("OK", "no active problems") for host in [*ELLA_HOSTS, DB_HOST]}
    assert check.exit_code(zabbix_lines(after), nagios=True) == 0


def test_a_refused_token_or_an_unreachable_zabbix_is_one_warn_line(zabbix: Zabbix):
    url = zabbix.server.url
    wrong_token = "0" * len(zabbix.token)
    cases = {
        "refused": (url, wrong_token, "Zabbix refused the API token (Invalid params. Not authorized.)"),
        "no API there": (url.rsplit("/zabbix", 1)[0] + "/nothing", zabbix.token, "Zabbix answered HTTP 404 Not Found"),
        "port closed": (url.replace("/zabbix", ":9/zabbix"), zabbix.token,
                        "Zabbix unreachable: [Errno 111] Connection refused"),
    }
    for case, (where, token, said) in cases.items():
        started = time.monotonic()
        asked = zabbix_api.measure(where, token, [*ELLA_HOSTS, DB_HOST], timeout=5)
        lines = zabbix_lines(asked)
        assert len(lines) == 1, (case, lines)
        line = lines[0]
        assert (line.state, line.host) == ("WARN", None), (case, line)
        assert line.value == said, (case, line)
        assert line.detail == f"problems not known: {zabbix_api.api_url(where)}", (case, line)
        assert zabbix.token not in repr(asked), case
        assert time.monotonic() - started < 5, case


def test_a_host_zabbix_does_not_watch_is_a_warning(zabbix: Zabbix):
    hostid = zabbix.server.api("host.get", {"output": ["hostid"], "filter": {"host": ["p22-ella-fo-01"]}})[0]["hostid"]
    zabbix.server.api("host.update", {"hostid": hostid, "status": 1})
    try:
        asked = zabbix_api.measure(zabbix.server.url, zabbix.token, [*ELLA_HOSTS, "p22-ella-x01"])
        assert by_host(zabbix_lines(asked)) == {
            "p22-ella-01": ("OK", "no active problems"),
            "p22-ella-fo-01": ("WARN", "disabled in Zabbix: its problems are not seen"),
            "p22-ella-x01": ("WARN", "not in Zabbix: its problems are not seen"),
        }
    finally:
        zabbix.server.api("host.update", {"hostid": hostid, "status": 0})


def inventory(root: Path, settings: str) -> Path:
    """An environment whose ELLA hosts do not resolve (unreachable: the ELLA play ends fast)."""
    (root / "group_vars" / "all").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  children:\n    ella_hosts:\n      hosts:\n"
                                    + "".join(f"        {host}:\n" for host in ELLA_HOSTS))
    (root / "group_vars" / "all" / "site.yml").write_text(
        "ella_environment: zbx-test\nella_root: /srv/ella\nella_primary_host: p22-ella-01\n"
        f"ella_service_user: ella\nella_db_host: {DB_HOST}\nella_db_port: 5432\nella_db_name: ella\n"
        "ella_db_user: ella\n" + settings)
    return root


def test_check_asks_zabbix_with_the_vaulted_token_which_never_reaches_the_artifacts(
        zabbix: Zabbix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    vault_password = tmp_path / "vault-password"
    vault_password.write_text("a vault password for this test\n")
    vaulted = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(vault_password), "--stdin-name", "vault_ella_check_zabbix_token"],
        input=zabbix.token, capture_output=True, text=True, check=True).stdout
    environment = inventory(tmp_path / "inventory", f"ella_check_zabbix_url: {zabbix.server.url}\n"
                                                    "ella_check_zabbix_token: \"{{ vault_ella_check_zabbix_token }}\"\n")
    (environment / "group_vars" / "all" / "vault.yml").write_text(vaulted)
    state = tmp_path / "state"
    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(state))
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(vault_password))
    # -vvv: Ansible's most verbose output goes to the run's artifacts too.
    monkeypatch.setattr(runner, "VERBOSITY", 3)
    zabbix.server.send("p22-ella-01", 1)
    try:
        assert ask_until(zabbix, lambda asked: bool(asked.get("problems")))["problems"]
        measured = check.measure(environment)
    finally:
        clear(zabbix)
    lines = [c for c in check.evaluate(measured) if c.name == "zabbix"]
    # The default Zabbix hosts: the inventory's ELLA hosts and its database host.
    assert by_host(lines) == {"p22-ella-01": ("CRIT", "High: ELLA test problem on p22-ella-01"),
                              "p22-ella-fo-01": ("OK", "no active problems"),
                              "p22-ella-db": ("OK", "no active problems")}
    # The ELLA hosts were unreachable: their own lines say so, and Zabbix was asked all the same.
    assert {(c.host, c.state) for c in check.evaluate(measured) if c.name == "host reachable"} == {
        ("p22-ella-01", "CRIT"), ("p22-ella-fo-01", "CRIT")}
    written = [path for path in state.rglob("*") if path.is_file()]
    assert any(path.name == "stdout" for path in written)
    leaks = [str(path) for path in written if zabbix.token.encode() in path.read_bytes()]
    assert leaks == []


def test_a_site_without_zabbix_settings_gets_one_line_saying_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    measured = check.measure(inventory(tmp_path / "inventory", ""))
    assert measured["zabbix"] == {"configured": False}
    lines = [c for c in check.evaluate(measured) if c.name == "zabbix"]
    assert [(c.host, c.state, c.value) for c in lines] == [(None, "OK", "Zabbix not configured")]


def test_a_wrong_zabbix_setting_is_one_warn_line_and_the_checklist_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    # The vault that should define the token is missing.
    measured = check.measure(inventory(tmp_path / "inventory", "ella_check_zabbix_url: http://zabbix.invalid/\n"
                                                               "ella_check_zabbix_token: \"{{ vault_zbx }}\"\n"))
    lines = [c for c in check.evaluate(measured) if c.name == "zabbix"]
    assert [(c.host, c.state) for c in lines] == [(None, "WARN")]
    assert lines[0].value.startswith("Zabbix not asked: ") and "'vault_zbx' is undefined" in lines[0].value
    assert {c.host for c in check.evaluate(measured) if c.name == "host reachable"} == set(ELLA_HOSTS)
