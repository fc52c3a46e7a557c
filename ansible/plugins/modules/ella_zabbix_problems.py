#!/usr/bin/python
"""Documentation of the ella_zabbix_problems action (ansible/plugins/action): it runs on the
controller only; this file gives Ansible and ansible-lint its options."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_zabbix_problems
short_description: The active Zabbix problems of the given hosts (Zabbix API, JSON-RPC)
description:
  - Asks Zabbix's API (api_jsonrpc.php; Zabbix 6.0 and later) for the hosts by technical or
    visible name and the active problems of their triggers, on the controller.
  - Never fails on Zabbix's account; an empty url or token returns configured=false, an
    unreachable Zabbix or a refused token an error text. Use it with no_log.
options:
  url: {description: Zabbix frontend URL or its api_jsonrpc.php., type: str, default: ""}
  token: {description: API token (Zabbix user settings, API tokens)., type: str, default: "", no_log: true}
  hosts: {description: Zabbix host names of the hosts to report., type: list, elements: str, default: []}
  severity: {description: "[warn, crit] severities, at or above (0..5).", type: list, elements: int, default: [2, 4]}
  timeout: {description: Seconds per API request., type: float, default: 10}
"""

RETURN = r"""
zabbix:
  description: configured, url, version, hosts (found, monitored, maintenance), problems (host, name,
    severity, since, acknowledged, suppressed), error and refused; never the token.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

# The one argument spec: the action plugin (plugins/action/ella_zabbix_problems.py) validates
# the task's arguments with it.
ARGUMENT_SPEC = {
    "url": {"type": "str", "default": ""},
    "token": {"type": "str", "default": "", "no_log": True},
    "hosts": {"type": "list", "elements": "str", "default": []},
    "severity": {"type": "list", "elements": "int", "default": [2, 4]},
    "timeout": {"type": "float", "default": 10.0},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg="ella_zabbix_problems runs as an action plugin on the controller (ansible.cfg action_plugins)")


if __name__ == "__main__":
    main()
