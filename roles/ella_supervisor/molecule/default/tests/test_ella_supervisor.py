"""ella_supervisor (and ella_health's gate) after converge and side_effect: supervisord as the
service user behind its password, and ELLA 1.16.5 running under it again after a stop that
also ended an ELLA program run by hand."""

from __future__ import annotations

import hashlib

import pytest

from ella_molecule import ella_api_config, ella_logs, instances, inventory_vars, processes

testinfra_hosts = instances()


@pytest.fixture
def settings(host) -> dict:
    return inventory_vars(host)


def config_path(settings: dict) -> str:
    return settings["ella_root"] + "/ops/supervisor/supervisor.cfg"


def test_config_is_private_and_holds_no_plaintext_password(host, settings):
    config = host.file(config_path(settings))
    assert (config.user, config.mode) == ("ella", 0o600)
    content = config.content_string
    assert "autostart=false" in content
    assert settings["ella_supervisor_password"] not in content
    digest = hashlib.sha1(settings["ella_supervisor_password"].encode()).hexdigest()
    assert "password={SHA}" + digest in content
    # ELLA's own supervisord inside the image gets a password of its own.
    assert 'SINGULARITYENV_SUPERVISOR_PASSWORD="' in content


def test_start_script_and_socket_directory_belong_to_the_service_user(host, settings):
    script = host.file(settings["ella_root"] + "/ops/supervisor/start-supervisord.sh")
    assert (script.user, script.mode) == ("ella", 0o750)
    socket = host.file("/tmp/ella-supervisor/socket")
    assert (socket.user, socket.mode) == ("ella", 0o700)


def supervisord(host, settings: dict) -> dict:
    """The host's supervisord (not ELLA's own, inside the image)."""
    [daemon] = [p for p in processes(host) if p["args"].endswith("supervisord -c " + config_path(settings))]
    return daemon


def test_supervisord_runs_as_the_service_user(host, settings):
    assert supervisord(host, settings)["user"] == "ella", ella_logs(host)


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


def test_ella_runs_supervised_as_the_service_user_from_the_live_release(host, settings):
    # Started again after the stop: one runtime parent, supervisord's child, the service
    # user's, holding the release the live symlink names.
    table = processes(host)
    runtimes = [p for p in table if p["args"] == "Singularity runtime parent"]
    assert len(runtimes) == 1, ella_logs(host)
    [runtime] = runtimes
    assert runtime["user"] == "ella"
    assert runtime["ppid"] == supervisord(host, settings)["pid"]
    # (As the service user: root in a container has no CAP_SYS_PTRACE to read another's fds.)
    images = host.check_output("runuser -u ella -- find /proc/%s/fd -lname '*.sif' -printf '%%l\\n'",
                               str(runtime["pid"]))
    assert images.split() == [settings["ella_root"] + "/archive/releases/ella-release-v1.16.5.sif"]
    # ELLA's own programs inside the image, under ELLA's own supervisord.
    commands = [p["args"] for p in table if p["user"] == "ella"]
    assert any(c.endswith("supervisord -c /socket/supervisor.cfg") for c in commands), commands
    assert any(c.endswith("api.main:app") for c in commands), commands


def test_only_elles_own_programs_run_the_one_run_by_hand_was_ended(host):
    # ELLA's polling worker, once: the one under ELLA's own supervisord.
    assert [p["user"] for p in processes(host) if p["args"] == "python src/api/polling.py"] == ["ella"]


def test_api_answers_and_logged_the_gates_probes(host, settings):
    assert "app" in ella_api_config(host)
    access = host.file(settings["ella_root"] + "/ella-prod/logs/nginx.access").content_string
    assert '"GET /api/v1/config/ HTTP/1.1" 200' in access


def test_program_state_is_running(host, settings):
    status = host.run("runuser -u ella -- supervisorctl -c %s status ella", config_path(settings))
    assert status.rc == 0 and "RUNNING" in status.stdout, status.stdout + ella_logs(host)
