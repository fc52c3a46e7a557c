"""Release versions: MAJOR.MINOR.PATCH (SemVer, with an optional pre-release such as
`1.18.0-rc.1`), patterns such as `1.x` and `1.17.x`, change kinds, and the release files that
hold them (ELLA names them `ella-release-v1.17.2.sif`).

Pure standard-library Python: the playbooks load this same file through
ansible/plugins/filter/ella.py, so the CLI and Ansible resolve versions identically.
"""

from __future__ import annotations

import re

_CORE = r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
_PRE = r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
# ASCII digits only (re.ASCII), and \Z: "1.2.3\n" is no version.
VERSION = re.compile(r"\A" + _CORE + _PRE + r"\Z", re.ASCII)
PATTERN = re.compile(r"\A(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?\.x\Z", re.ASCII)
# ella-release-v1.17.2.sif (ELLA's name; also without the v): the version is group 1.
RELEASE_FILE = re.compile(
    r"\Aella-release-v?((?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)\.sif\Z", re.ASCII)


class VersionError(ValueError):
    """A version or pattern that is not one."""


def normalize(text: str) -> str:
    """A request as typed: ELLA's tags carry a `v` (v1.17.2); the version does not."""
    return text[1:] if isinstance(text, str) and text[:1] == "v" and VERSION.match(text[1:]) else text


def parse(version: str) -> tuple:
    """A sort key: pre-releases order before their release (1.18.0-rc.1 < 1.18.0), SemVer's rule."""
    match = VERSION.match(version or "")
    if not match:
        raise VersionError(f"{version!r} is not a version: use MAJOR.MINOR.PATCH, 1.x or 1.17.x")
    major, minor, patch = (int(part) for part in match.groups()[:3])
    pre = match.group(4)
    if pre is None:
        return major, minor, patch, 1, ()
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return major, minor, patch, 0, parts


def is_prerelease(version: str) -> bool:
    return parse(version)[3] == 0


def is_request(text: str) -> bool:
    """Whether `text` is a version or a pattern at all (checked before any host is touched)."""
    text = normalize(text)
    return bool(VERSION.match(text or "") or PATTERN.match(text or ""))


def files_by_version(filenames: list[str]) -> dict[str, str]:
    """version -> file name of the release files among `filenames` (paths allowed)."""
    found = {}
    for name in filenames:
        base = str(name).rsplit("/", 1)[-1]
        match = RELEASE_FILE.match(base)
        if match:
            found.setdefault(match.group(1), base)
    return found


def versions_in(filenames: list[str]) -> list[str]:
    """Versions of the release files among `filenames`, oldest first."""
    return sorted(files_by_version(filenames), key=parse)


def resolve(request: str, available: list[str]) -> str:
    """The newest available version matching `request` (an exact version must be present).
    A pattern never resolves to a pre-release: 1.17.x is never 1.18.0-fault.x or an rc."""
    request = normalize(request)
    if VERSION.match(request or ""):
        if request not in available:
            raise VersionError(f"ella-release-v{request}.sif is not staged in archive/releases")
        return request
    match = PATTERN.match(request or "")
    if not match:
        raise VersionError(f"{request!r} is not a version: use MAJOR.MINOR.PATCH, 1.x or 1.17.x")
    major = int(match.group(1))
    minor = int(match.group(2)) if match.group(2) is not None else None
    candidates = [
        v for v in available
        if not is_prerelease(v) and parse(v)[0] == major and (minor is None or parse(v)[1] == minor)
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
    if new[2] != old[2]:
        return "patch"
    # Same MAJOR.MINOR.PATCH, another pre-release: never a hotfix.
    return "minor"
