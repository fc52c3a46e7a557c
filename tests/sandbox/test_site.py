"""The sandbox is a faithful copy of the site with real ELLA: separate hosts on a shared storage,
a protected supervisor, the singularity stand-in with Singularity's semantics (a read-only root
enforced by the kernel, only bound paths visible, Singularity's environment rules, its process
title), ELLA's own first-time setup, and `status` that says what runs where."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import run_cli
from tests.sandbox.conftest import HEAD_1_16_5, RELEASES, alembic_head, revision
from tests.sandbox_access import PROD_ROOT


IMAGE = f"{RELEASES}/ella-release-v1.17.2.sif"


def in_image(sandbox, command: str, env: str = "", binds: str = "", host: str = "p22-ella-fo-01"):
    """A command in the 1.17.2 image on a host where ELLA does not run, as the service user."""
    return sandbox.exec(host, f"cd /tmp && {env} singularity exec {binds} {IMAGE} sh -c '{command}'", user="ella",
                        check=False)


def test_the_image_is_a_read_only_root_and_only_bound_paths_are_visible(sandbox):
    written = in_image(sandbox, "touch /ella/x")
    assert written.rc != 0 and "Read-only file system" in written.stderr
    # The shared storage is the host's, not the image's: invisible unless bound.
    assert in_image(sandbox, f"ls {PROD_ROOT}").rc != 0
    bound = in_image(sandbox, "ls /data && touch /data/probe && echo ok", binds=f"--bind {PROD_ROOT}/ella-prod/data:/data")
    assert bound.rc == 0 and "fixtures" in bound.stdout and "ok" in bound.stdout
    sandbox.exec("p22-ella-fo-01", f"rm -f {PROD_ROOT}/ella-prod/data/probe", user="ella")
    # The image is ELLA's: its source and virtualenv where ELLA's Dockerfile puts them.
    listing = in_image(sandbox, "ls /ella/ops/prod /dist/ella-python/bin")
    assert "entrypoint.sh" in listing.stdout and "gunicorn" in listing.stdout
    # The caller stays who it is inside.
    assert in_image(sandbox, "id -u").stdout.strip() == "1500"


def test_environment_follows_singularity_the_image_wins_unless_singularityenv(sandbox):
    # LANG is the image's (ENV of ELLA's Dockerfile), with Singularity's warning; PYTHONPATH too.
    result = in_image(sandbox, "echo $LANG $PYTHONPATH $PATH", env="LANG=en_US.UTF-8")
    assert result.stdout.split()[:2] == ["C.UTF-8", "/ella/src"]
    assert result.stdout.split()[2].startswith("/dist/ella-python/bin:/ella/bin")
    assert "will not forward new value [en_US.UTF-8]" in result.stderr
    # A host variable the image does not set passes; SINGULARITYENV_ sets or overrides.
    assert in_image(sandbox, "echo $DB_URL", env="DB_URL=postgresql://x@y/z").stdout.strip() == "postgresql://x@y/z"
    assert in_image(sandbox, "echo $LANG", env="SINGULARITYENV_LANG=nb_NO.UTF-8").stdout.strip() == "nb_NO.UTF-8"


def test_failures_before_the_container_are_one_fatal_line(sandbox):
    missing = in_image(sandbox, "true", binds="--bind /nonexistent:/data")
    assert missing.rc == 255 and missing.stderr.startswith("FATAL:") and "doesn't exist" in missing.stderr
    not_an_image = sandbox.exec("p22-ella-fo-01", f"singularity exec {PROD_ROOT}/ops/pgpass true", user="ella",
                                check=False)
    assert not_an_image.rc == 255 and "image format not recognized" in not_an_image.stderr
    inspect = sandbox.exec("p22-ella-fo-01", f"singularity inspect --json {IMAGE}", user="ella")
    labels = json.loads(inspect.stdout)["data"]["attributes"]["labels"]
    assert labels["maintainer"] == "OUS AMG <ella-support@medisin.uio.no>"


def test_ella_cli_needs_db_url_and_its_config_and_fails_in_its_own_words(sandbox):
    # ELLA's api package connects at import, before it reads its configuration: without
    # DB_URL SQLAlchemy fails on a None URL; with it, config.py's assert names ELLA_CONFIG.
    without_db = in_image(sandbox, "ella-cli database compare")
    assert without_db.rc == 1 and "_instantiate_plugins" in without_db.stderr
    without_config = in_image(sandbox, "ella-cli database compare", env="DB_URL=postgresql:///nodb")
    assert without_config.rc == 1
    assert "Config file not provided in environment variable 'ELLA_CONFIG'" in without_config.stderr


def test_the_first_release_is_ellas_own_first_time_setup(fresh):
    # make-production, gene panels, user groups, filter configs, users: ELLA's docs, done by ELLA.
    assert revision(fresh) == HEAD_1_16_5 == alembic_head("1.16.5")
    assert fresh.psql("SELECT count(*) FROM genepanel;") == "4"
    assert fresh.psql("SELECT string_agg(name, ',' ORDER BY name) FROM usergroup;") == "testgroup01,testgroup02,testgroup03"
    assert int(fresh.psql("SELECT count(*) FROM filterconfig;")) >= 1
    assert fresh.psql("SELECT count(*) FROM \"user\" WHERE username = 'testuser1';") == "1"
    # ELLA's configuration validates against 1.16.5's schema (ELLA checked it at its start).
    assert "allow_technical: true" in fresh.storage("ella-prod/data/ella_config.yml").read_text()


def test_supervisor_web_ui_needs_the_password(sandbox):
    url = f"http://{sandbox.address('p22-ella-01')}:9000/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    token = base64.b64encode(f"ella-admin:{sandbox.secret('supervisor_password')}".encode()).decode()
    accepted = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Basic {token}"}),
                                      timeout=10)
    assert accepted.status == 200 and "ella" in accepted.read().decode()


def test_secrets_on_the_shared_storage_are_private(sandbox):
    for path in ("ops/supervisor/supervisor.cfg", "ops/pgpass"):
        assert sandbox.exec("p22-ella-fo-01", f"stat -c '%a %U' {PROD_ROOT}/{path}").stdout.split() == ["600", "ella"]
    config = sandbox.exec("p22-ella-01", f"cat {PROD_ROOT}/ops/supervisor/supervisor.cfg").stdout
    assert "autostart=false" in config and sandbox.secret("supervisor_password") not in config
    # ELLA's own supervisord has a password of its own, and its socket directory is the host's own.
    assert "SINGULARITYENV_SUPERVISOR_PASSWORD" in config
    assert sandbox.exec("p22-ella-01", "stat -c '%a %U' /tmp/ella-supervisor/socket").stdout.split() == ["700", "ella"]


def test_prod_hosts_share_storage_but_are_separate_hosts(sandbox):
    marker = f"{PROD_ROOT}/ella-prod/shared-storage-probe"
    sandbox.ssh("p22-ella-01", f"sudo -u ella sh -c 'hostname > {marker}'")
    try:
        assert sandbox.ssh("p22-ella-fo-01", f"sudo -u ella cat {marker}").stdout.strip() == "p22-ella-01"
    finally:
        sandbox.exec("p22-ella-01", f"rm -f {marker}")
    assert "api.main:app" in sandbox.exec("p22-ella-01", "ps -eo args").stdout
    assert "api.main:app" not in sandbox.exec("p22-ella-fo-01", "ps -eo args").stdout


def test_status_shows_which_host_runs_which_version_as_the_process_table_does(fresh):
    result = run_cli("--inventory", "sandbox", "--output", "json", "status")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    hosts = {h["host"]: h for h in status["hosts"]}
    assert (status["verdict"], status["active_hosts"]) == ("ONE ACTIVE", ["p22-ella-01"])
    assert hosts["p22-ella-01"]["ella"] == "RUNNING" and hosts["p22-ella-fo-01"]["ella"] == "STOPPED"
    assert hosts["p22-ella-01"]["running_versions"] == ["1.16.5"] and hosts["p22-ella-01"]["inner_problems"] == []
    # Real Singularity shows its process so, and ELLA's own supervisord runs inside it.
    processes = fresh.exec("p22-ella-01", "ps -eo args").stdout
    assert "Singularity runtime parent" in processes and "supervisord -c /socket/supervisor.cfg" in processes


def test_the_api_answers_on_the_active_host_only(fresh):
    config = json.load(urllib.request.urlopen(f"http://{fresh.address('p22-ella-01')}:3114/api/v1/config/",
                                              timeout=10))
    assert "app" in config and "version" not in config["app"]  # ELLA reports no version
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{fresh.address('p22-ella-fo-01')}:3114/api/v1/config/", timeout=5)
    access = fresh.exec("p22-ella-01", f"tail -n 20 {PROD_ROOT}/ella-prod/logs/nginx.access").stdout
    assert '"GET /api/v1/config/ HTTP/1.1" 200' in access


def test_staging_has_its_own_storage_and_database(sandbox):
    # (Earlier tests release on staging: from its first release again.)
    run_cli("sandbox", "reset", "sandbox-staging", check=True)
    staging_root = "/ess/p22/data/durable/staging/ella"
    assert sandbox.exec("p22-ella-staging-01", f"test -L {staging_root}/ella-prod/ella.sif", check=False).rc == 0
    assert sandbox.exec("p22-ella-staging-01", f"test -e {PROD_ROOT}", check=False).rc != 0
    assert sandbox.exec("p22-ella-01", f"test -e {staging_root}", check=False).rc != 0
    assert revision(sandbox, "ella_staging") == HEAD_1_16_5
