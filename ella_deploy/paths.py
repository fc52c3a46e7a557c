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
    """An inventory name (`prod`, `staging`, `sandbox`, ...) or a path to one.

    A path must look like one of ours: a directory with hosts.yml and no executable file in
    it (Ansible would run every executable file under an inventory path as a script), or a
    single .yml/.yaml file."""
    if name_or_path in known_inventories():
        return INVENTORY_DIR / name_or_path
    path = Path(name_or_path).expanduser().resolve() if name_or_path.strip() else None
    known = ", ".join(known_inventories())
    if path is None or not path.exists() or path in (INVENTORY_DIR, PROJECT_ROOT, Path("/")):
        raise EllaDeployError(f"unknown inventory {name_or_path!r}: give one of {known} or a path to one",
                              ExitCode.USAGE)
    if path.is_file():
        if path.suffix in (".yml", ".yaml") and not os.access(path, os.X_OK):
            return path
        raise EllaDeployError(f"inventory {name_or_path!r}: a file must be a .yml/.yaml inventory, not executable",
                              ExitCode.USAGE)
    if not any((path / name).is_file() for name in ("hosts.yml", "hosts.yaml")):
        raise EllaDeployError(f"inventory {name_or_path!r}: no hosts.yml in it; give one of {known} or an "
                              "inventory directory like them", ExitCode.USAGE)
    executables = [p for p in path.rglob("*") if p.is_file() and os.access(p, os.X_OK)]
    if executables:
        raise EllaDeployError(f"inventory {name_or_path!r}: {executables[0].relative_to(path)} is executable, and "
                              "Ansible would run it; an inventory path holds no programs", ExitCode.USAGE)
    return path


def inventory_hosts(inventory: Path) -> list[str]:
    """The ELLA hosts (group ella_hosts) an inventory names, read without Ansible: so that a
    --host typo is refused before any host is touched."""
    import yaml  # PyYAML comes with ansible-core; not Ansible itself

    found: list[str] = []
    files = [inventory] if inventory.is_file() else [inventory / n for n in ("hosts.yml", "hosts.yaml")]
    for path in files:
        if path.is_file():
            tree = yaml.safe_load(path.read_text()) or {}
            group = ((tree.get("all") or {}).get("children") or {}).get("ella_hosts") or {}
            found += list((group.get("hosts") or {}).keys())
    if inventory == INVENTORY_DIR / "sandbox":
        from ella_deploy import sandbox

        found += list(sandbox.extra_hosts())
    return found


def check_host(inventory: Path, host: str | None, command: str) -> None:
    """Bad input, before anything runs: a host the inventory does not name."""
    if host is None:
        return
    hosts = inventory_hosts(inventory)
    if host not in hosts:
        raise EllaDeployError(f"{command}: {host!r} is not an ELLA host of this inventory ({', '.join(hosts)})",
                              ExitCode.USAGE)


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
