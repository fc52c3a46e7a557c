"""Action plugin: the active Zabbix problems of the given hosts, asked on the controller.

The work is ella_deploy/zabbix.py (standard library only), loaded by path as the filter
plugin loads the CLI's rules, so `ella-deploy check`, a plain ansible-playbook run and AWX
ask Zabbix the same way. An action plugin, not a module: the API token stays in this
process (no module payload written to disk with it), and the result carries no argument
back (the task has no_log too, so not even a failure shows its arguments).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ansible.plugins.action import ActionBase

_ZABBIX = Path(__file__).resolve().parents[3] / "ella_deploy" / "zabbix.py"
# The module of the same name documents the task and holds its argument spec.
_MODULE = Path(__file__).resolve().parents[1] / "modules" / "ella_zabbix_problems.py"


def _load(name, path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _zabbix():
    return _load("ella_deploy_rules_zabbix", _ZABBIX)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    # Nothing runs on a host: the API is asked from here.
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec=_load("ella_zabbix_problems_module", _MODULE).ARGUMENT_SPEC)
        severity = args["severity"]
        if len(severity) != 2:
            return {**result, "failed": True, "msg": "severity: give [warn, crit]"}
        result["zabbix"] = _zabbix().measure(args["url"], args["token"], args["hosts"], args["timeout"], severity)
        result["changed"] = False
        return result
