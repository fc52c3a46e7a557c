"""ella_supervisor after converge: supervisord as the service user, its web UI behind the
password, and ELLA 2.0.0 started by the `program` entry point."""

from __future__ import annotations

import hashlib

import pytest

from ella_molecule import ella_api_config, ella_logs, instances, inventory_vars

testinfra_hosts = instances()


@pytest.fixture
def settings(host) -> dict:
    return inventory_vars(host)


def test_config_is_private_and_holds_no_plaintext_password(host, settings):
    config = host.file(settings["ella_root"] + "/ops/supervisor/supervisor.cfg")
    assert config.user == "ella"
    assert config.mode == 0o600
    content = config.content_string
    assert "autostart=false" in content
    assert settings["ella_supervisor_password"] not in content
    digest = hashlib.sha1(settings["ella_supervisor_password"].encode()).hexdigest()
    assert "password={SHA}" + digest in content


def test_supervisord_runs_as_the_service_user(host):
    daemons = host.process.filter(comm="supervisord")
    assert [daemon.user for daemon in daemons] == ["ella"], ella_logs(host)


def test_web_ui_listens_on_port_9000(host):
    assert host.socket("tcp://0.0.0.0:9000").is_listening, ella_logs(host)


def http_status(host, url: str, user: str | None = None) -> str:
    """The HTTP status code of a GET, as curl on the instance sees it."""
    curl = "curl --silent --output /dev/null --write-out '%%{http_code}'"
    if user is None:
        return host.check_output(curl + " %s", url)
    return host.check_output(curl + " --user %s %s", user, url)


def test_web_ui_wants_the_password(host, settings):
    url = "http://127.0.0.1:9000/"
    assert http_status(host, url) == "401"
    credentials = f"{settings['ella_supervisor_username']}:{settings['ella_supervisor_password']}"
    assert http_status(host, url, user=credentials) == "200"


def test_ella_runs_supervised_as_the_service_user(host):
    ella = [p for p in host.process.filter(user="ella") if p.args.endswith("ella-release-2.0.0.sif run")]
    assert len(ella) == 1, ella_logs(host)
    supervisord = host.process.get(comm="supervisord")
    assert ella[0].ppid == supervisord.pid


def test_api_answers_with_version_2_0_0(host):
    assert ella_api_config(host)["app"]["version"] == "2.0.0"
