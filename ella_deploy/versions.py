"""Release versions: MAJOR.MINOR.PATCH, patterns such as `2.x` and `2.3.x`, change kinds.

Pure standard-library Python: the playbooks load this same file through
ansible/plugins/filter/ella.py, so the CLI and Ansible resolve versions identically.
"""

from __future__ import annotations

import re

RELEASE_FILE = re.compile(r"^ella-release-(\d+)\.(\d+)\.(\d+)\.sif$")
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
PATTERN = re.compile(r"^(\d+)(?:\.(\d+))?\.x$")


class VersionError(ValueError):
    """A version or pattern that is not one."""


def parse(version: str) -> tuple[int, int, int]:
    match = VERSION.match(version or "")
    if not match:
        raise VersionError(f"{version!r} is not a version: use MAJOR.MINOR.PATCH, 2.x or 2.3.x")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def is_request(text: str) -> bool:
    """Whether `text` is a version or a pattern at all (checked before any host is touched)."""
    return bool(VERSION.match(text or "") or PATTERN.match(text or ""))


def versions_in(filenames: list[str]) -> list[str]:
    """Versions of the `ella-release-X.Y.Z.sif` files among `filenames`, oldest first."""
    found = []
    for name in filenames:
        match = RELEASE_FILE.match(name.rsplit("/", 1)[-1])
        if match:
            found.append(tuple(int(p) for p in match.groups()))
    return [".".join(map(str, v)) for v in sorted(set(found))]


def resolve(request: str, available: list[str]) -> str:
    """The newest available version matching `request` (an exact version must be present)."""
    if VERSION.match(request or ""):
        if request not in available:
            raise VersionError(f"ella-release-{request}.sif is not staged in archive/releases")
        return request
    match = PATTERN.match(request or "")
    if not match:
        raise VersionError(f"{request!r} is not a version: use MAJOR.MINOR.PATCH, 2.x or 2.3.x")
    major = int(match.group(1))
    minor = int(match.group(2)) if match.group(2) is not None else None
    candidates = [
        v for v in available
        if parse(v)[0] == major and (minor is None or parse(v)[1] == minor)
    ]
    if not candidates:
        raise VersionError(f"no staged release matches {request} (staged: {', '.join(available) or 'none'})")
    return max(candidates, key=parse)


def change_kind(current: str | None, target: str) -> str:
    """none / major / minor / patch (a patch is a hotfix) / downgrade / initial."""
    if not current:
        return "initial"
    old, new = parse(current), parse(target)
    if new == old:
        return "none"
    if new < old:
        return "downgrade"
    if new[0] != old[0]:
        return "major"
    if new[1] != old[1]:
        return "minor"
    return "patch"
