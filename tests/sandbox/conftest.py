"""Fixtures of the end-to-end tests: real ELLA (1.16.5 to 1.17.2) in the sandbox."""

from __future__ import annotations

import json
import re
import tarfile
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from ella_deploy import sandbox as sandbox_module
from tests.conftest import run_cli
from tests.sandbox_access import PROD_ROOT

RELEASES = f"{PROD_ROOT}/archive/releases"
# Revisions of ELLA's releases (its own migration files decide: see alembic_head).
HEAD_1_16_5 = "1675e8d8b078"


class EllaUser:
    """testuser1 in ELLA's own web API, logged in with the sandbox's password: what a user writes."""

    def __init__(self, sandbox, host: str = "p22-ella-01") -> None:
        self.base = f"http://{sandbox.address(host)}:3114"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.call("/api/v1/users/actions/login/",
                  {"username": "testuser1", "password": sandbox.secret("ella_user_password")})

    def call(self, path: str, body: dict | None = None) -> object:
        request = urllib.request.Request(self.base + path, headers={"Content-Type": "application/json"},
                                         data=json.dumps(body).encode() if body is not None else None)
        with self.opener.open(request, timeout=30) as response:
            text = response.read()
            # (ELLA answers a login with a redirect to its web UI)
            is_json = response.headers.get_content_type() == "application/json"
        return json.loads(text) if text and is_json else None

    def report_errors(self, count: int, tag: str) -> list[str]:
        """Errors the web UI reports as a user sees them (ELLA's uiexception table)."""
        messages = [f"{tag} {number}" for number in range(count)]
        for message in messages:
            self.call("/api/v1/ui/exceptionlog/", {"message": message, "location": "/overview",
                                                   "stacktrace": "sandbox", "state": {}})
        return messages


def api(sandbox, path: str, host: str = "p22-ella-01") -> object:
    with urllib.request.urlopen(f"http://{sandbox.address(host)}:3114{path}", timeout=30) as response:
        return json.load(response)


# ELLA's own log of every API request (resourcelog), written by the health gate's probes and by
# any visit: not data a rollback restores or a release keeps still.
REQUEST_LOG = ("resourcelog",)


def table_checksums(sandbox, database: str = "ella") -> dict[str, str]:
    """md5 of every table's rows (in a stable order): the data, not only its size. ELLA's
    request log is left out (REQUEST_LOG)."""
    tables = sandbox.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                          f"AND tablename NOT IN ({', '.join(repr(t) for t in REQUEST_LOG)}) ORDER BY 1;", database)
    query = " UNION ALL ".join(
        f"SELECT '{name}', coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM public.\"{name}\" t"
        for name in tables.split())
    return dict(line.split("|", 1) for line in sandbox.psql(query + ";", database).splitlines())


def revision(sandbox, database: str = "ella") -> str:
    return sandbox.psql("SELECT version_num FROM alembic_version;", database)


def alembic_head(version: str) -> str:
    """The head revision of a release, read from its own migration files in ../shared/ella."""
    archive = sandbox_module.ella_sources() / f"ella-v{version}.tar.gz"
    revisions, parents = set(), set()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if "/migration/alembic/versions/" in member.name and member.name.endswith(".py"):
                text = tar.extractfile(member).read().decode()
                revisions.add(re.search(r'^revision = "(\w+)"', text, re.M).group(1))
                down = re.search(r"^down_revision = (.+)$", text, re.M).group(1)
                parents.update(re.findall(r'"(\w+)"', down))
    heads = revisions - parents
    assert len(heads) == 1, heads
    return heads.pop()


def release(version: str, *options: str, timeout: float = 900, env: dict | None = None) -> tuple[int, dict, str]:
    """`ella-deploy release VERSION --yes` with --output json: (exit code, summary, stderr)."""
    done = run_cli("--inventory", "sandbox", "--output", "json", "release", version, "--yes", *options,
                   timeout=timeout, env=env)
    try:
        summary = json.loads(done.stdout)
    except ValueError:
        summary = {}
    return done.returncode, summary, done.stderr


def running_image(sandbox, host: str = "p22-ella-01") -> str:
    """The image the Singularity runtime parent of ELLA on `host` holds open (read as the
    service user: the process lives in its user namespace, which root in the VM may not enter)."""
    return sandbox.exec(host, "for pid in $(pgrep -f '^Singularity runtime parent'); do "
                              "ls -l /proc/$pid/fd | grep -o '[^/]*[.]sif$'; done", user="ella",
                        check=False).stdout.strip()


def stage_fault(sandbox, fault: str, version: str = "1.17.2") -> str:
    """A release broken on purpose (testbed/ella-image/faults), staged as any release is;
    returns the version to ask for (1.17.2-fault.NAME: never chosen by a pattern)."""
    built = sandbox_module.build_ella_images([version], fault=fault)
    name = f"{version}-fault.{fault}"
    target = sandbox.storage(f"archive/releases/ella-release-v{name}.sif")
    if not target.exists():
        sandbox_module.copy_image(next(iter(built.values())), target)
    return name


@pytest.fixture
def fresh(sandbox):
    """The sandbox as `sandbox reset` leaves it: 1.16.5 running on p22-ella-01, its first release."""
    run_cli("sandbox", "reset", check=True)
    return sandbox


@pytest.fixture
def prod(sandbox):
    """Production as before a release: 1.16.5 on p22-ella-01, with what users wrote through ELLA."""
    run_cli("sandbox", "reset", check=True)
    sandbox.user_messages = EllaUser(sandbox).report_errors(5, "before the release")
    return sandbox


@pytest.fixture
def fixtures_dir(sandbox) -> Path:
    """The site's fixture files (ELLA's data directory, /data/fixtures in the image)."""
    return sandbox.storage("ella-prod/data/fixtures")
