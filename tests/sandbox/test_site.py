"""The sandbox is a faithful copy of the site: separate hosts, shared storage, a protected
supervisor, an ELLA stand-in that really migrates PostgreSQL, and `status` that says what
runs where."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.sandbox

PROD_ROOT = "/ess/p22/data/durable/production/ella"
RELEASES = f"{PROD_ROOT}/archive/releases"
SCRATCH_DB = "standin_probe"


def ella_cli(sandbox, version: str, args: str, database: str) -> tuple[int, str]:
    """ella-cli of a staged stand-in image on p22-ella-01, as the service user."""
    result = sandbox.exec(
        "p22-ella-01",
        f"DB_URL=postgresql://ella@p22-ella-db:5432/{database} PGPASSFILE={PROD_ROOT}/ops/pgpass "
        f"singularity exec {RELEASES}/ella-release-{version}.sif ella-cli {args}",
        user="ella", check=False,
    )
    return result.rc, result.stdout + result.stderr


@pytest.fixture
def scratch_database(sandbox):
    sandbox.psql(f"DROP DATABASE IF EXISTS {SCRATCH_DB}; CREATE DATABASE {SCRATCH_DB} OWNER ella;", "postgres")
    yield SCRATCH_DB
    sandbox.psql(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE);", "postgres")


def table_names(sandbox, database: str) -> set[str]:
    rows = sandbox.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public';", database
    )
    return set(rows.split())


def test_compare_fails_against_an_unmigrated_database(sandbox, scratch_database):
    rc, output = ella_cli(sandbox, "2.0.0", "database compare", scratch_database)
    assert rc == 1, output
    assert "Traceback" not in output


def test_standin_migrations_really_change_the_database(sandbox, scratch_database):
    rc, output = ella_cli(sandbox, "2.0.0", "database upgrade head", scratch_database)
    assert rc == 0, output
    assert {"analysis", "alleleassessment", "interpretationlog", "uiexception", "alembic_version"} <= (
        table_names(sandbox, scratch_database)
    )
    assert ella_cli(sandbox, "2.0.0", "database compare", scratch_database)[0] == 0
    revision_200 = sandbox.psql("SELECT version_num FROM alembic_version;", scratch_database)

    sandbox.psql(
        "INSERT INTO analysis (name, genepanel) SELECT 'analysis-' || i, 'HBOC' FROM generate_series(1, 25) i;"
        "INSERT INTO alleleassessment (analysis_id, allele, classification) "
        "SELECT id, 'chr17:g.' || id || 'A>G', 'class' || (id % 5 + 1) FROM analysis;",
        scratch_database,
    )
    # A patch release shares its head: no migration pending.
    assert ella_cli(sandbox, "2.0.1", "database compare", scratch_database)[0] == 0
    # 2.1.0 has migrations; the 2.0.0 database does not match it until upgraded.
    assert ella_cli(sandbox, "2.1.0", "database compare", scratch_database)[0] == 1

    rc, output = ella_cli(sandbox, "2.1.0", "database upgrade head", scratch_database)
    assert rc == 0, output
    assert sandbox.psql("SELECT version_num FROM alembic_version;", scratch_database) != revision_200
    columns = sandbox.psql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'analysis';", scratch_database
    ).split()
    assert "priority" in columns
    # Data survived and the data migration touched every row.
    assert sandbox.psql("SELECT count(*) FROM analysis;", scratch_database) == "25"
    assert sandbox.psql(
        "SELECT count(*) FROM alleleassessment WHERE evaluation IS NOT NULL;", scratch_database
    ) == "25"
    assert ella_cli(sandbox, "2.1.0", "database compare", scratch_database)[0] == 0
    # And the older image now refuses the newer database.
    assert ella_cli(sandbox, "2.0.0", "database compare", scratch_database)[0] == 1


def test_supervisor_web_ui_needs_the_password(sandbox):
    url = f"http://{sandbox.address('p22-ella-01')}:9000/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401

    wrong = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"ella-admin:nope").decode()})
    with pytest.raises(urllib.error.HTTPError) as refused_wrong:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused_wrong.value.code == 401

    token = base64.b64encode(f"ella-admin:{sandbox.secret('supervisor_password')}".encode()).decode()
    accepted = urllib.request.urlopen(
        urllib.request.Request(url, headers={"Authorization": f"Basic {token}"}), timeout=10
    )
    assert accepted.status == 200
    assert "ella" in accepted.read().decode()


def test_supervisor_config_on_shared_storage_is_private(sandbox):
    stat = sandbox.exec("p22-ella-fo-01", f"stat -c '%a %U' {PROD_ROOT}/ops/supervisor/supervisor.cfg").stdout.split()
    assert stat == ["600", "ella"]
    config = sandbox.exec("p22-ella-01", f"cat {PROD_ROOT}/ops/supervisor/supervisor.cfg").stdout
    assert "autostart=false" in config
    assert sandbox.secret("supervisor_password") not in config
    pgpass = sandbox.exec("p22-ella-01", f"stat -c '%a %U' {PROD_ROOT}/ops/pgpass").stdout.split()
    assert pgpass == ["600", "ella"]


def test_prod_hosts_share_storage_but_are_separate_hosts(sandbox):
    marker = f"{PROD_ROOT}/ella-prod/shared-storage-probe"
    sandbox.ssh("p22-ella-01", f"sudo -u ella sh -c 'hostname > {marker}'")
    try:
        seen = sandbox.ssh("p22-ella-fo-01", f"sudo -u ella cat {marker}").stdout.strip()
        assert seen == "p22-ella-01"
    finally:
        sandbox.exec("p22-ella-01", f"rm -f {marker}")

    assert sandbox.ssh("p22-ella-01", "hostname").stdout.strip() == "p22-ella-01"
    assert sandbox.ssh("p22-ella-fo-01", "hostname").stdout.strip() == "p22-ella-fo-01"
    # Separate process tables: a process started on one host is not visible on the other.
    sandbox.exec("p22-ella-01", "nohup sleep 300 >/dev/null 2>&1 & echo started")
    try:
        assert "sleep 300" in sandbox.exec("p22-ella-01", "ps -eo args").stdout
        assert "sleep 300" not in sandbox.exec("p22-ella-fo-01", "ps -eo args").stdout
    finally:
        sandbox.exec("p22-ella-01", "pkill -f 'sleep 300'", check=False)


def test_status_shows_which_prod_host_runs_which_version(prod):
    sandbox = prod
    result = run_cli("--inventory", "sandbox", "--output", "json", "status")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    hosts = {h["host"]: h for h in status["hosts"]}
    assert set(hosts) == {"p22-ella-01", "p22-ella-fo-01"}
    assert status["verdict"] == "ONE ACTIVE"
    assert status["active_hosts"] == ["p22-ella-01"]
    assert hosts["p22-ella-01"]["ella"] == "RUNNING"
    assert hosts["p22-ella-fo-01"]["ella"] == "STOPPED"
    # What status says matches what is really there.
    link = sandbox.exec("p22-ella-fo-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip()
    assert link.endswith(f"ella-release-{hosts['p22-ella-01']['symlink_version']}.sif")
    processes = sandbox.exec("p22-ella-01", "ps -eo args").stdout
    assert f"ella-release-{hosts['p22-ella-01']['running_versions'][0]}.sif run" in processes
    assert ".sif run" not in sandbox.exec("p22-ella-fo-01", "ps -eo args").stdout

    text = run_cli("--inventory", "sandbox", "status")
    assert "p22-ella-01" in text.stdout and "p22-ella-fo-01" in text.stdout
    assert "ONE ACTIVE" in text.stdout


def test_the_api_answers_on_the_active_host_only(prod):
    sandbox = prod
    config = json.load(urllib.request.urlopen(f"http://{sandbox.address('p22-ella-01')}:3114/api/v1/config/", timeout=10))
    live = sandbox.exec("p22-ella-01", f"readlink {PROD_ROOT}/ella-prod/ella.sif").stdout.strip()
    assert live.endswith(f"ella-release-{config['app']['version']}.sif")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{sandbox.address('p22-ella-fo-01')}:3114/api/v1/config/", timeout=5)
    access_log = sandbox.exec("p22-ella-01", f"tail -n 5 {PROD_ROOT}/ella-prod/logs/api.log").stdout
    assert '"GET /api/v1/config/ HTTP/1.1" 200' in access_log


def test_staging_has_its_own_storage_and_database(sandbox):
    staging_root = "/ess/p22/data/durable/staging/ella"
    assert sandbox.exec("p22-ella-staging-01", f"test -e {staging_root}/ella-prod/ella.sif", check=False).rc == 0
    assert sandbox.exec("p22-ella-staging-01", f"test -e {PROD_ROOT}", check=False).rc != 0
    assert sandbox.exec("p22-ella-01", f"test -e {staging_root}", check=False).rc != 0
    assert sandbox.psql("SELECT count(*) FROM alembic_version;", "ella_staging") == "1"
