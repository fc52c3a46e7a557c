"""The project's Ansible plugins, loaded by path as Ansible loads them (they are no package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
MODULE_UTILS = ROOT / "ansible" / "plugins" / "module_utils"


def project_module_utils() -> None:
    """The project's module_utils importable as `ansible.module_utils.NAME`, as Ansible ships
    them with a module (they import one another so)."""
    import ansible.module_utils

    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(MODULE_UTILS))


def load(relative: str) -> ModuleType:
    """The plugin file at `relative` (from the repository root) as a module."""
    project_module_utils()
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def module_command(relative: str) -> list[str]:
    """The command that runs the module at `relative` as Ansible runs it on a host (its
    arguments file follows), with the project's module_utils."""
    boot = (f"import runpy, ansible.module_utils as utils; utils.__path__.append({str(MODULE_UTILS)!r}); "
            f"runpy.run_path({str(ROOT / relative)!r}, run_name='__main__')")
    return [sys.executable, "-c", boot]
