"""ella_cli after converge: `broadcast new molecule` ran in the live image (once: the
idempotence run skips it), `broadcast list` changed nothing, `database upgrade head` was
refused before ella-cli ran."""

from __future__ import annotations

import json

from ella_molecule import ella_api_config, instances

testinfra_hosts = instances()

# Head of the stand-in's 2.0.0 release (testbed/README.md).
HEAD_2_0_0 = "4f1c2a9e7b30"


def psql(host, query: str) -> str:
    """A query on ELLA's database as the server's superuser, over the local socket."""
    return host.check_output("runuser -u postgres -- psql --no-psqlrc -At -d ella -c %s", query)


def test_broadcast_was_added_once_and_is_active(host):
    assert psql(host, "SELECT message, active FROM broadcast") == "molecule|t"


def test_api_serves_the_broadcast(host):
    # ELLA 2.0.0 runs from the live image; the broadcast is ELLA's, not only a row.
    assert ella_api_config(host)["app"]["version"] == "2.0.0"
    answer = host.check_output("curl --silent --show-error --fail http://127.0.0.1:3114/api/v1/broadcasts/")
    assert [broadcast["message"] for broadcast in json.loads(answer)] == ["molecule"]


def test_database_stays_at_the_head_of_2_0_0(host):
    assert psql(host, "SELECT version_num FROM alembic_version") == HEAD_2_0_0
