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


def known_inventories() -> list[str]:
    return sorted(p.name for p in INVENTORY_DIR.iterdir() if p.is_dir())


def resolve_inventory(name_or_path: str) -> Path:
    """An inventory name (`prod`, `staging`, `sandbox`, ...) or a path to one."""
    if name_or_path in known_inventories():
        return INVENTORY_DIR / name_or_path
    path = Path(name_or_path).expanduser().resolve() if name_or_path.strip() else None
    # A path must name one inventory, never the folder of all of them or the project.
    if path is not None and path.exists() and path not in (INVENTORY_DIR, PROJECT_ROOT, Path("/")):
        return path
    raise EllaDeployError(
        f"unknown inventory {name_or_path!r}: give one of {', '.join(known_inventories())} or a path to one",
        ExitCode.USAGE,
    )


def inventory_setting(inventory: Path, name: str) -> object | None:
    """A plain (untemplated) value of the inventory's group_vars/all, e.g. ella_staging_inventory.
    For the few settings the CLI needs before any playbook runs."""
    import yaml  # PyYAML comes with ansible-core; not Ansible itself

    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # an ansible-vault file: not plain YAML
        if isinstance(values, dict) and name in values:
            return values[name]
    return None
