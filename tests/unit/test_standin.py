"""Unit tests of the ELLA and singularity stand-ins (test doubles) in testbed/.

No database and no containers: images are built into a temporary directory and
run with this interpreter, as ``python3 IMAGE.sif ...`` and through
testbed/singularity. The database behaviour is covered by the integration tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTBED = Path(__file__).resolve().parents[2] / "testbed"
SINGULARITY = TESTBED / "singularity"
sys.path.insert(0, str(TESTBED))

import build_standin  # noqa: E402
from ella_standin.migrations import CHAIN, FAULT_REVISION, chain_for, head_for  # noqa: E402

VERSIONS = ("2.0.0", "2.0.1", "2.1.0", "3.0.0")
HAS_PSYCOPG2 = importlib.util.find_spec("psycopg2") is not None


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("images")
    return {version: build_standin.build(out, version) for version in VERSIONS}


@pytest.fixture(scope="module")
def failing_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin.build(tmp_path_factory.mktemp("faulty"), "2.1.0", "migration-fails")


def run_image(
    image: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(image), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        check=False,
    )


def run_singularity(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SINGULARITY), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=30,
        check=False,
    )


def clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DB_URL", "ELLA_STANDIN_DEBUG") and not key.startswith("SINGULARITYENV_")
    }
    return {**env, **(extra or {})}


def labels(image: Path) -> dict[str, str]:
    result = run_image(image, "inspect", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["type"] == "container"
    return dict(document["data"]["attributes"]["labels"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


# Build


def test_build_is_deterministic(tmp_path: Path) -> None:
    first = build_standin.build(tmp_path / "a", "2.1.0")
    second = build_standin.build(tmp_path / "b", "2.1.0")
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a" / "ella-release-2.1.0.sif.sha256").read_text() == (
        tmp_path / "b" / "ella-release-2.1.0.sif.sha256"
    ).read_text()


def test_builds_differ_across_versions_and_faults(tmp_path: Path) -> None:
    digests = {
        hashlib.sha256(build_standin.build(tmp_path / name, version, fault).read_bytes()).digest()
        for name, version, fault in [
            ("a", "2.1.0", None),
            ("b", "2.1.1", None),
            ("c", "2.1.0", "never-healthy"),
        ]
    }
    assert len(digests) == 3


def test_image_is_a_zipapp_with_fixed_metadata(images: dict[str, Path]) -> None:
    image = images["2.1.0"]
    assert image.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert image.stat().st_mode & 0o777 == 0o644
    with zipfile.ZipFile(image) as archive:
        entries = archive.infolist()
    names = [entry.filename for entry in entries]
    assert names == sorted(names)
    assert {"__main__.py", "ella_standin/_build.py", "ella_standin/main.py"} <= set(names)
    assert all(entry.date_time == (1980, 1, 1, 0, 0, 0) for entry in entries)
    assert not any("__pycache__" in name for name in names)


def test_checksum_file_verifies_like_sha256sum(images: dict[str, Path]) -> None:
    image = images["2.0.0"]
    checksum_file = image.with_name(image.name + ".sha256")
    assert checksum_file.stat().st_mode & 0o777 == 0o644
    content = checksum_file.read_text()
    assert content == f"{hashlib.sha256(image.read_bytes()).hexdigest()}  {image.name}\n"
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "-c", checksum_file.name],
            cwd=image.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == f"{image.name}: OK"


@pytest.mark.parametrize("version", ["2.1", "2.1.0.1", "v2.1.0", "2.1.x", "02.1.0", ""])
def test_build_script_rejects_a_bad_version(tmp_path: Path, version: str) -> None:
    result = subprocess.run(
        [sys.executable, str(TESTBED / "build_standin.py"), "--out", str(tmp_path), version],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert_one_line_error(result, "expected X.Y.Z")
    assert list(tmp_path.iterdir()) == []


def test_build_script_rejects_a_bad_version_before_building_any(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(TESTBED / "build_standin.py"), "--out", str(tmp_path), "2.0.0", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_build_script_builds_every_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(TESTBED / "build_standin.py"),
            "--out",
            str(tmp_path),
            "2.0.0",
            "2.2.0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ella-release-2.0.0.sif",
        "ella-release-2.0.0.sif.sha256",
        "ella-release-2.2.0.sif",
        "ella-release-2.2.0.sif.sha256",
    ]


def test_build_function_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"X\.Y\.Z"):
        build_standin.build(tmp_path, "2.1")
    with pytest.raises(ValueError, match="unknown fault"):
        build_standin.build(tmp_path, "2.1.0", "explodes")


# Migration chain


def test_chain_is_linear_with_alembic_like_ids() -> None:
    parents = [None, *(m.revision for m in CHAIN[:-1])]
    assert [m.down_revision for m in CHAIN] == parents
    for migration in CHAIN:
        assert len(migration.revision) == 12
        int(migration.revision, 16)
    introduced = [m.introduced_version for m in CHAIN]
    assert introduced == sorted(introduced)


def test_head_follows_the_release_a_migration_came_with() -> None:
    assert head_for("2.0.0") == head_for("2.0.1") == CHAIN[0].revision
    assert head_for("2.1.0") == head_for("2.1.7") == CHAIN[1].revision
    assert head_for("2.10.0") == head_for("2.2.0")  # numeric, not string, comparison
    assert head_for("1.9.9") is None
    assert chain_for("99.0.0") == CHAIN


def test_fault_adds_a_failing_revision_on_top_of_the_head() -> None:
    chain = chain_for("2.1.0", "migration-fails")
    assert chain[:-1] == chain_for("2.1.0")
    assert chain[-1].revision == FAULT_REVISION
    assert chain[-1].down_revision == head_for("2.1.0")
    assert head_for("2.1.0", "never-healthy") == head_for("2.1.0")


# The image: inspect and ella-cli without a database


def test_inspect_json_shows_version_fault_and_head(images: dict[str, Path]) -> None:
    found = labels(images["2.1.0"])
    assert found["org.label-schema.version"] == "2.1.0"
    assert found["ella.fault"] == "none"
    assert found["ella.migration.head"] == head_for("2.1.0")
    assert "stand-in" in found["org.label-schema.description"]
    assert len(found["ella.build.source-sha256"]) == 64


def test_inspect_heads_of_built_images(images: dict[str, Path], failing_image: Path) -> None:
    heads = {version: labels(image)["ella.migration.head"] for version, image in images.items()}
    assert heads["2.0.0"] == heads["2.0.1"]
    assert heads["2.1.0"] != heads["2.0.0"]
    assert heads["3.0.0"] not in (heads["2.0.0"], heads["2.1.0"])
    faulty = labels(failing_image)
    assert faulty["ella.fault"] == "migration-fails"
    assert faulty["ella.migration.head"] == FAULT_REVISION
    assert faulty["ella.migration.chain"].split() == [
        *labels(images["2.1.0"])["ella.migration.chain"].split(),
        FAULT_REVISION,
    ]


def test_inspect_plain_is_key_value_lines(images: dict[str, Path]) -> None:
    result = run_image(images["2.0.1"], "inspect")
    assert result.returncode == 0
    pairs = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert pairs == labels(images["2.0.1"])


def test_database_head_needs_no_database(images: dict[str, Path]) -> None:
    result = run_image(images["2.1.0"], "ella-cli", "database", "head")
    assert result.returncode == 0
    assert result.stdout == f"{head_for('2.1.0')}\n"


@pytest.mark.parametrize(
    "command", [["database", "current"], ["database", "upgrade", "head"], ["broadcast", "list"]]
)
def test_ella_cli_without_db_url_fails_in_one_line(
    images: dict[str, Path], command: list[str]
) -> None:
    result = run_image(images["2.1.0"], "ella-cli", *command)
    assert result.returncode == 2
    assert_one_line_error(result, "DB_URL is not set")


@pytest.mark.skipif(not HAS_PSYCOPG2, reason="psycopg2 is not installed for this python")
def test_ella_cli_with_unreachable_database_fails_in_one_line(images: dict[str, Path]) -> None:
    url = f"postgresql://ella:s3cret-pw@127.0.0.1:{closed_port()}/ella"
    result = run_image(images["2.1.0"], "ella-cli", "database", "compare", env={"DB_URL": url})
    assert result.returncode == 2
    assert_one_line_error(result, "cannot connect to database")
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_ella_cli_usage_errors_are_one_line(images: dict[str, Path]) -> None:
    result = run_image(images["2.1.0"], "ella-cli", "database", "upgrade", "sideways")
    assert result.returncode == 2
    assert_one_line_error(result, "invalid choice")
    result = run_image(images["2.1.0"], "ella-cli", "broadcast", "deactivate", "one")
    assert result.returncode == 2
    assert_one_line_error(result, "invalid int value")


def test_debug_shows_the_traceback(images: dict[str, Path]) -> None:
    result = run_image(
        images["2.1.0"], "ella-cli", "database", "current", env={"ELLA_STANDIN_DEBUG": "1"}
    )
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_run_without_database_refuses_to_start(images: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "logs" / "api.log"
    url = f"postgresql://ella@127.0.0.1:{closed_port()}/ella"
    env = {"DB_URL": url, "ELLA_API_LOG": str(log), "ELLA_STANDIN_BOOT_DELAY": "0"}
    result = run_image(images["2.1.0"], "run", env=env)
    assert result.returncode == 1
    assert "refusing to start" in result.stderr
    assert "Traceback" not in result.stderr
    assert "refusing to start" in log.read_text()


def test_crash_on_start_exits_1_after_the_boot_delay(tmp_path: Path) -> None:
    image = build_standin.build(tmp_path, "2.1.0", "crash-on-start")
    env = {"ELLA_API_LOG": str(tmp_path / "api.log"), "ELLA_STANDIN_BOOT_DELAY": "0.3"}
    started = time.monotonic()
    result = run_image(image, "run", env=env)
    assert result.returncode == 1
    assert time.monotonic() - started >= 0.3
    assert "crash-on-start" in result.stderr


# The singularity stand-in


def test_singularity_version() -> None:
    result = run_singularity("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("singularity-ce version ")


def test_singularity_unknown_command_prints_usage() -> None:
    result = run_singularity("build", "x.sif")
    assert result.returncode == 1
    assert "Usage:" in result.stderr


def test_singularity_missing_image_is_fatal(tmp_path: Path) -> None:
    result = run_singularity("exec", str(tmp_path / "nope.sif"), "ella-cli", "database", "head")
    assert result.returncode == 255
    assert_one_line_error(result, "could not open image")


def test_singularity_exec_resolves_the_image_symlink(
    images: dict[str, Path], tmp_path: Path
) -> None:
    link = tmp_path / "current.sif"
    link.symlink_to(images["3.0.0"])
    result = run_singularity("exec", "--cleanenv", str(link), "ella-cli", "database", "head")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{head_for('3.0.0')}\n"
    result = run_singularity("exec", str(link), "sh", "-c", 'echo "$SINGULARITY_CONTAINER"')
    assert result.stdout.strip() == str(images["3.0.0"])


def test_singularity_cleanenv_passes_only_singularityenv(images: dict[str, Path]) -> None:
    script = 'echo "${DB_URL:-unset} ${EXTRA:-unset}"'
    env = {"DB_URL": "postgresql://host-env/ella", "SINGULARITYENV_EXTRA": "inside"}
    kept = run_singularity("exec", str(images["2.0.0"]), "sh", "-c", script, env=env)
    assert kept.stdout.split() == ["postgresql://host-env/ella", "inside"]
    cleaned = run_singularity("exec", "-e", str(images["2.0.0"]), "sh", "-c", script, env=env)
    assert cleaned.stdout.split() == ["unset", "inside"]


def test_singularity_inspect_json(images: dict[str, Path]) -> None:
    result = run_singularity("inspect", "--json", str(images["2.0.1"]))
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["data"]["attributes"]["labels"]["org.label-schema.version"] == "2.0.1"


@pytest.fixture
def booting_server(images: dict[str, Path], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    link = tmp_path / "current.sif"
    link.symlink_to(images["2.1.0"])
    env = clean_env({"ELLA_STANDIN_BOOT_DELAY": "30", "ELLA_API_LOG": str(tmp_path / "api.log")})
    process = subprocess.Popen(
        [sys.executable, str(SINGULARITY), "run", str(link)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_singularity_run_becomes_python_on_the_real_image_and_stops_on_sigterm(
    booting_server: subprocess.Popen[str], images: dict[str, Path], tmp_path: Path
) -> None:
    log = tmp_path / "api.log"
    deadline = time.monotonic() + 10
    while "booting" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the server never logged its boot"
        time.sleep(0.05)
    cmdline = Path(f"/proc/{booting_server.pid}/cmdline").read_bytes().split(b"\0")
    assert str(images["2.1.0"]).encode() in cmdline
    assert b"run" in cmdline
    booting_server.send_signal(signal.SIGTERM)
    assert booting_server.wait(timeout=5) == 0
    assert "stopped while booting" in log.read_text()
