"""`ella-deploy stage IMAGE`: the procedure's upload to archive/releases, verified."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ella_deploy import versions
from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import ProgressCallback, run_playbook


def validate(image: Path) -> str:
    """The image's version; bad input fails here, before any host is touched. ELLA publishes
    its release files without a checksum file: a .sha256 beside the image must match, and
    without one the image must at least be a squashfs or SIF file (its magic bytes)."""
    match = versions.RELEASE_FILE.match(image.name)
    if not match:
        raise EllaDeployError(f"stage: {image.name} is not named ella-release-vX.Y.Z.sif", ExitCode.USAGE)
    if not image.is_file():
        raise EllaDeployError(f"stage: no such file {image}", ExitCode.USAGE)
    with image.open("rb") as handle:
        head = handle.read(64)
    if not (head.startswith(b"hsqs") or b"SIF_MAGIC" in head):
        raise EllaDeployError(f"stage: {image.name} is not a Singularity image (no SIF or squashfs header)",
                              ExitCode.USAGE)
    checksum_file = image.with_name(image.name + ".sha256")
    if checksum_file.is_file():
        published = (checksum_file.read_text().split() or [""])[0]
        digest = hashlib.sha256()
        with image.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != published:
            raise EllaDeployError(
                f"stage: {image.name} does not match its .sha256 (file {digest.hexdigest()}, .sha256 {published})",
                ExitCode.REFUSED,
            )
    return match.group(1)


def stage(inventory: Path, image: Path, progress: ProgressCallback | None = None) -> dict[str, Any]:
    validate(image)
    result = run_playbook("stage.yml", inventory, extravars={"ella_image_source": str(image.resolve())},
                          progress=progress)
    if not result.ok:
        raise EllaDeployError(f"stage: {result.error_summary()}", ExitCode.FAILED)
    return dict(result.published["ella_image_staged"])
