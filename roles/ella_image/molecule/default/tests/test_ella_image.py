"""ella_image after converge: ELLA 2.2.0 staged from the controller into archive/releases,
owned by the service user, identical to the controller's image; a different 2.2.0 refused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from ella_molecule import instances, inventory_vars

testinfra_hosts = instances()

REPOSITORY = Path(__file__).resolve().parents[5]
IMAGE = "ella-release-2.2.0.sif"


@pytest.fixture(scope="module")
def controller_image(tmp_path_factory) -> Path:
    """ELLA 2.2.0 as converge built it on the controller (the stand-in build is deterministic;
    converge removed its scratch copy)."""
    out = tmp_path_factory.mktemp("images")
    subprocess.run(
        [sys.executable, str(REPOSITORY / "testbed" / "build_standin.py"), "--out", str(out), "2.2.0"],
        check=True,
        capture_output=True,
    )
    return out / IMAGE


def staged(host, name: str):
    return host.file(inventory_vars(host)["ella_root"] + "/archive/releases/" + name)


@pytest.mark.parametrize("name", [IMAGE, IMAGE + ".sha256"])
def test_staged_files_belong_to_the_service_user(host, name):
    file = staged(host, name)
    assert file.is_file
    assert not file.is_symlink
    assert file.user == "ella"
    assert file.group == "ella"
    assert file.mode == 0o644


def test_staged_image_is_the_controllers(host, controller_image):
    assert staged(host, IMAGE).sha256sum == hashlib.sha256(controller_image.read_bytes()).hexdigest()


def test_checksum_file_is_the_controllers_and_matches_the_image(host, controller_image):
    published = staged(host, IMAGE + ".sha256").content_string
    assert published == Path(str(controller_image) + ".sha256").read_text()
    assert published.split()[0] == staged(host, IMAGE).sha256sum


def test_the_never_healthy_image_was_not_staged(host):
    # Only the stand-ins prepare staged and the one 2.2.0 (with its .sha256); no partial copy.
    names = sorted(host.check_output("ls -A %s", inventory_vars(host)["ella_root"] + "/archive/releases").split())
    assert names == sorted(
        f"ella-release-{version}.sif{suffix}" for version in ("2.0.0", "2.1.0", "2.2.0") for suffix in ("", ".sha256")
    )
