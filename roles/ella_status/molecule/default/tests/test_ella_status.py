"""ella_status after converge: its report matches what the host really runs."""

from __future__ import annotations

import json

import pytest

from ella_molecule import ella_logs, instances

testinfra_hosts = instances()


@pytest.fixture
def report(host) -> dict:
    return json.loads(host.file("/var/tmp/molecule-ella-status.json").content_string)


def test_report_names_the_host(host, report):
    assert report["hostname"] == host.check_output("hostname")


def test_report_names_the_running_supervisord(host, report):
    supervisord = host.process.get(comm="supervisord")
    assert report["supervisord"] == {"running": True, "pid": supervisord.pid, "error": None}


def test_report_names_the_running_program(host, report):
    ella = host.process.get(user="ella", comm="python3")
    program = report["program"]
    assert (program["name"], program["state"], program["pid"]) == ("ella", "RUNNING", ella.pid), ella_logs(host)


def test_report_lists_the_one_ella_process_as_supervised(host, report):
    ella = host.process.get(user="ella", comm="python3")
    [process] = report["processes"]
    assert process["pid"] == ella.pid
    assert process["version"] == "2.0.0"
    assert process["supervised"] is True


def test_report_resolves_the_live_symlink(report):
    symlink = report["symlink"]
    assert symlink["target"] == "../archive/releases/ella-release-2.0.0.sif"
    assert symlink["version"] == "2.0.0"
    assert symlink["exists"] is True
