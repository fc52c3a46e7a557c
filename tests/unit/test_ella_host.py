"""ELLA's processes told by their command lines (ansible/plugins/module_utils/ella_host.py), as
ELLA's own ops/prod/supervisor-template.cfg starts them (the same in 1.16.5 and 1.17.x) and
as ps shows them on an ELLA host."""

from __future__ import annotations

import time

import pytest

from tests.unit import plugins

ella_host = plugins.load("ansible/plugins/module_utils/ella_host.py")

# ELLA's programs inside the image: gunicorn, the polling worker (run from /ella with a
# relative path), the analysis watcher, the entrypoint; ella-cli.
SERVERS = [
    "/dist/ella-python/bin/python3 /dist/ella-python/bin/gunicorn -c /ella/ops/prod/gunicorn.conf.py api.main:app",
    "python src/api/polling.py",
    "python /ella/src/vardb/watcher/analysis_watcher.py --analyses /data/analyses/incoming "
    "--dest /data/analyses/imported",
    "/bin/bash -ue /ella/ops/prod/entrypoint.sh",
]


@pytest.mark.parametrize("line", SERVERS)
def test_ellas_programs_are_servers(line):
    assert ella_host._kind(line.split()) == "server"


def test_ella_cli_and_the_runtime_parent():
    assert ella_host._kind("/dist/ella-python/bin/python /ella/src/cli/main.py database compare".split()) == "cli"
    assert ella_host._kind(["Singularity runtime parent"]) == "runtime"


@pytest.mark.parametrize("line", [
    "/usr/bin/python3 /usr/bin/supervisord -c /ess/p22/data/durable/production/ella/ops/supervisor/supervisor.cfg",
    "python src/api/polling_helper.py",
    "less /tmp/notes-src/api/polling.py",
])
def test_other_processes_are_not_ella(line):
    assert ella_host._kind(line.split()) is None


def test_a_polling_worker_that_outlived_its_ella_is_an_ella_server():
    # Its runtime parent and ELLA's own supervisord are gone: only its command line tells.
    now = time.time()
    table = {
        1: {"ppid": 0, "argv": ["/run/podman-init"], "uid": 0, "started": now - 600},
        4_000_001: {"ppid": 1, "argv": ["python", "src/api/polling.py"], "uid": 1500, "started": now - 60},
    }
    [found] = ella_host.ella_processes(table=table)
    assert (found["pid"], found["role"], found["singularity"]) == (4_000_001, "server", False)


# alembic's stderr as ELLA v1.17.2's `database upgrade head` prints it, with the testbed's fault
# release (a fourth migration that raises) after the three real ones.
UPGRADE_STDERR = """\
/dist/ella-python/lib/python3.11/site-packages/sqlalchemy/orm/query.py:195: SyntaxWarning: "is not" with a literal.
INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
INFO  [alembic.runtime.migration] Will assume transactional DDL.
INFO  [alembic.runtime.migration] Running upgrade 1675e8d8b078 -> 88b3cbf57659, Support gene panels from GPB
INFO  [alembic.runtime.migration] Running upgrade 88b3cbf57659 -> 92066141f180, Update json schemas
INFO  [alembic.runtime.migration] Running upgrade 92066141f180 -> 4c2844fef850, Allele report
"""


def _done(returncode, stderr):
    import subprocess
    return subprocess.CompletedProcess(["ella-cli"], returncode, stdout="", stderr=stderr)


def test_an_upgrade_reports_the_migrations_it_ran():
    report = ella_host.upgrade_report(_done(0, UPGRADE_STDERR))
    assert report == {"error": None, "applied": ["1675e8d8b078 -> 88b3cbf57659, Support gene panels from GPB",
                                                 "88b3cbf57659 -> 92066141f180, Update json schemas",
                                                 "92066141f180 -> 4c2844fef850, Allele report"]}
    assert ella_host.interpret("migration", _done(0, "")) == {"applied": [], "error": None}


def test_a_failed_upgrade_names_the_migration_it_failed_in_and_the_error():
    stderr = UPGRADE_STDERR + ("INFO  [alembic.runtime.migration] Running upgrade 4c2844fef850 -> fa11ed000001, fault\n"
                               "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                               "RuntimeError: revision fa11ed000001 fails on purpose\n")
    report = ella_host.upgrade_report(_done(1, stderr))
    assert report["error"] == ("ella-cli database upgrade head exited 1 in the migration 4c2844fef850 -> fa11ed000001: "
                               "RuntimeError: revision fa11ed000001 fails on purpose")
    assert len(report["applied"]) == 4


def test_an_upgrade_that_fails_before_any_migration_says_so():
    report = ella_host.upgrade_report(_done(1, "sqlalchemy.exc.OperationalError: connection refused\n"))
    assert report["error"] == ("ella-cli database upgrade head exited 1 before any migration started: "
                               "sqlalchemy.exc.OperationalError: connection refused")
