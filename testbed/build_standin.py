#!/usr/bin/env python3
"""Build images of the ELLA stand-in (test double) for ella-deploy's tests.

For each version X.Y.Z, writes DIR/ella-release-X.Y.Z.sif, a python zipapp of
testbed/ella_standin with the version and fault baked in (run it as
``python3 ella-release-X.Y.Z.sif COMMAND``, or through testbed/singularity), and
DIR/ella-release-X.Y.Z.sif.sha256 in sha256sum format. Builds are byte-for-byte
deterministic: the same sources, version and fault give the same checksum.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

TESTBED = Path(__file__).resolve().parent
PACKAGE = "ella_standin"
if str(TESTBED) not in sys.path:
    sys.path.insert(0, str(TESTBED))

from ella_standin.buildinfo import (  # noqa: E402  (needs TESTBED on sys.path)
    BUILD_MODULE,
    FAULTS,
    BuildInfo,
    check_fault,
    parse_version,
    render_build_module,
)
from ella_standin.errors import StandinError  # noqa: E402

SHEBANG = b"#!/usr/bin/env python3\n"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""Every entry's timestamp: the earliest a zip can hold, so builds don't depend on mtimes."""
ENTRY_MODE = 0o644
MAIN_MODULE = f"from {PACKAGE}.main import main\n\nraise SystemExit(main())\n"


def image_name(version: str) -> str:
    return f"ella-release-{version}.sif"


def build(out_dir: Path, version: str, fault: str | None = None) -> Path:
    """Write the image of ``version`` (with ``fault``) and its .sha256 file; return the image.

    Raises ValueError for a version not X.Y.Z or an unknown fault.
    """
    try:
        parse_version(version)
        check_fault(fault)
    except StandinError as error:
        raise ValueError(error.message) from None
    sources = _package_sources(TESTBED / PACKAGE)
    info = BuildInfo(version=version, fault=fault, source_sha256=_digest(sources))
    entries = {
        "__main__.py": MAIN_MODULE.encode(),
        f"{PACKAGE}/{BUILD_MODULE}.py": render_build_module(info).encode(),
        **sources,
    }
    image = SHEBANG + _zip(entries)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_path = out_dir / image_name(version)
    _write(image_path, image)
    checksum = hashlib.sha256(image).hexdigest()
    _write(out_dir / f"{image_path.name}.sha256", f"{checksum}  {image_path.name}\n".encode())
    return image_path


def _package_sources(package_dir: Path) -> dict[str, bytes]:
    """The package's python files by archive name; a stray generated module is left out."""
    return {
        f"{PACKAGE}/{path.relative_to(package_dir).as_posix()}": path.read_bytes()
        for path in sorted(package_dir.rglob("*.py"))
        if "__pycache__" not in path.parts and path.stem != BUILD_MODULE
    }


def _digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    # Stored, not deflated: the bytes then depend on no zlib version.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.external_attr = (0o100000 | ENTRY_MODE) << 16
            info.create_system = 3  # unix, so the mode above is read back
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def _write(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically, mode 0644 whatever the umask."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    partial.chmod(ENTRY_MODE)
    os.replace(partial, path)


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _OneLineErrorParser(
        prog="build_standin.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="faults: " + "; ".join(f"{name}: {text}" for name, text in FAULTS.items()),
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="where to write (made if missing)"
    )
    parser.add_argument("--fault", choices=list(FAULTS), help="bake a fault into every image built")
    parser.add_argument("versions", nargs="+", metavar="VERSION", help="X.Y.Z")
    args = parser.parse_args(argv)
    for version in args.versions:
        try:
            parse_version(version)
        except StandinError as error:
            parser.error(error.message)
    for version in args.versions:
        image = build(args.out, version, args.fault)
        print(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
