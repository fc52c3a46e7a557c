"""ella_lock after converge: taken, refused to a rival, to a break while its holder was there
and to a wrong token, renewed, released; a dead run's lock broken, kept aside, released."""

from __future__ import annotations

import json

from ella_molecule import instances, inventory_vars

testinfra_hosts = instances()


def deploy_dir(host) -> str:
    return inventory_vars(host)["ella_root"] + "/deploy"


def test_lock_is_released(host):
    assert not host.file(deploy_dir(host) + "/lock").exists


def test_only_the_dead_runs_lock_was_broken_and_it_is_kept_aside_with_its_holder(host):
    # The break attempted while the holder was there moved nothing aside.
    broken = host.run("ls -d %s/lock.broken-*", deploy_dir(host)).stdout.split()
    assert len(broken) == 1, broken
    holder = json.loads(host.file(broken[0] + "/holder.json").content_string)
    assert holder["operator"] == "stale"
    assert host.file(broken[0]).user == "ella"


def test_lock_directory_belongs_to_the_service_user(host):
    deploy = host.file(deploy_dir(host))
    assert deploy.is_directory
    assert deploy.user == "ella"
