"""Where things are: the project's Ansible tree, inventories and local state."""

from __future__ import annotations

import os
from pathlib import Path

from ella_deploy.errors import EllaDeployError, ExitCode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = PROJECT_ROOT / "ansible"
PLAYBOOK_DIR = ANSIBLE_DIR / "playbooks"
INVENTORY_DIR = PROJECT_ROOT / "inventories"
TESTBED_DIR = PROJECT_ROOT / "testbed"

# The sandbox is the embedded default: trying the tool can never reach production by accident.
DEFAULT_INVENTORY = "sandbox"


def state_dir() -> Path:
    """Per-operator state: ansible-runner artifacts of every run, kept for the record."""
    explicit = os.environ.get("ELLA_DEPLOY_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg_state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg_state) / "ella-deploy"


def sandbox_dir() -> Path:
    """The sandbox's own state: keys, known_hosts, secrets, the shared storage it mounts."""
    return Path(os.environ.get("ELLA_SANDBOX_DIR") or PROJECT_ROOT / ".sandbox").resolve()


def resolve_inventory(name_or_path: str) -> Path:
    """An inventory name (`prod`, `staging`, `sandbox`, ...) or a path to one."""
    named = INVENTORY_DIR / name_or_path
    if "/" not in name_or_path and named.is_dir():
        return named
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path.resolve()
    known = ", ".join(sorted(p.name for p in INVENTORY_DIR.iterdir() if p.is_dir()))
    raise EllaDeployError(
        f"unknown inventory {name_or_path!r}: give one of {known} or a path",
        ExitCode.USAGE,
    )
