"""ella_health after converge and side_effect: ELLA 2.0.0 answers, and the gate asked it."""

from __future__ import annotations

from ella_molecule import ella_api_config, ella_logs, instances, inventory_vars

testinfra_hosts = instances()


def test_api_answers_with_version_2_0_0(host):
    config = ella_api_config(host)
    assert config["app"]["version"] == "2.0.0"
    assert config["database"]["revision"] == config["database"]["head"]


def test_program_is_running(host):
    config = inventory_vars(host)["ella_root"] + "/ops/supervisor/supervisor.cfg"
    status = host.run("runuser -u ella -- supervisorctl -c %s status ella", config)
    assert status.rc == 0 and "RUNNING" in status.stdout, status.stdout + ella_logs(host)


def test_access_log_shows_the_gate_probes(host):
    api_log = host.file(inventory_vars(host)["ella_root"] + "/ella-prod/logs/api.log").content_string
    assert '"GET /api/v1/config/ HTTP/1.1" 200' in api_log
