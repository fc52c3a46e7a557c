#!/usr/bin/python
"""Ansible module: what one ELLA host is running, read in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_host_facts
short_description: Report supervisord, the ELLA program, every ELLA process and the live symlink
description:
  - Reads only. Asks supervisord over its host-local socket (XML-RPC, not text output),
    finds every ELLA on the host however it was started (Singularity's runtime parent,
    ELLA's own processes, ella-cli runs), and resolves the live symlink.
  - With inner_supervisor_config, also asks ELLA's own supervisord inside the image for
    its programs (nginx, api, polling, analysis-watcher), because the outer program stays RUNNING
    while they may be dead.
  - Run it as the service user (or root) so it can reach the sockets and see which image
    a process holds open.
options:
  supervisor_config:
    description: supervisor.cfg whose [supervisorctl] serverurl names the socket.
    type: path
    required: true
  program:
    description: Name of the supervisor program that runs ELLA.
    type: str
    default: ella
  image_link:
    description: The live symlink (ella-prod/ella.sif).
    type: path
    required: true
  inner_supervisor_config:
    description: The config ELLA's entrypoint writes for its own supervisord (host path).
    type: path
  inner_socket_dir:
    description: The host directory bound at /socket, where that supervisord's socket is.
    type: path
"""

RETURN = r"""
ella_host:
  description: hostname, supervisord, program, processes (servers), cli (ella-cli runs), inner, symlink.
  returned: always
  type: dict
"""

import socket

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_host import Supervisor, ella_processes, inner_programs, symlink_state


def main():
    module = AnsibleModule(
        argument_spec=dict(
            supervisor_config=dict(type="path", required=True),
            program=dict(type="str", default="ella"),
            image_link=dict(type="path", required=True),
            inner_supervisor_config=dict(type="path"),
            inner_socket_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    supervisord, program = Supervisor(module.params["supervisor_config"]).state(module.params["program"])
    found = ella_processes(supervisord["pid"])
    report = {
        "hostname": socket.gethostname(),
        "supervisord": supervisord,
        "program": program,
        "processes": [p for p in found if p["role"] == "server"],
        "cli": [p for p in found if p["role"] == "cli"],
        "symlink": symlink_state(module.params["image_link"]),
    }
    if module.params["inner_supervisor_config"] and report["processes"]:
        programs, error = inner_programs(module.params["inner_supervisor_config"], module.params["inner_socket_dir"])
        report["inner"] = {"programs": programs, "error": error}
    module.exit_json(changed=False, ella_host=report)


if __name__ == "__main__":
    main()
