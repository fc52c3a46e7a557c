#!/usr/bin/python
"""Ansible module: what one ELLA host is running, read in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_host_facts
short_description: Report supervisord, the ELLA program, stray ELLA processes and the live symlink
description:
  - Reads only. Asks supervisord over its host-local socket (XML-RPC, not text output),
    scans the process table for every process running an ELLA image (supervised or not),
    and resolves the live symlink.
  - Run it as the service user so it can reach supervisord's socket.
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
"""

RETURN = r"""
ella_host:
  description: hostname, supervisord, program, processes, symlink.
  returned: always
  type: dict
"""

import configparser
import os
import re
import socket
import time
import xmlrpc.client

from ansible.module_utils.basic import AnsibleModule

RELEASE_NAME = re.compile(r"ella-release-(\d+\.\d+\.\d+)\.sif$")


def version_of(image_path):
    match = RELEASE_NAME.search(image_path or "")
    return match.group(1) if match else None


def serverurl_of(config_path):
    parser = configparser.RawConfigParser()
    parser.read(config_path)
    return parser.get("supervisorctl", "serverurl", fallback=None)


def supervisor_state(config_path, program):
    """supervisord's pid and the program's state, or why they are unknown."""
    result = {"running": False, "pid": None, "error": None}
    program_info = {"name": program, "state": "UNKNOWN", "pid": None, "uptime_seconds": None}
    if not os.path.exists(config_path):
        result["error"] = "no supervisor.cfg"
        return result, program_info
    serverurl = serverurl_of(config_path)
    if not serverurl or not serverurl.startswith("unix://"):
        result["error"] = "supervisor.cfg has no unix serverurl"
        return result, program_info
    try:
        from supervisor.xmlrpc import SupervisorTransport
    except ImportError:
        result["error"] = "python3 supervisor package missing"
        return result, program_info
    proxy = xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, serverurl)
    )
    try:
        result["pid"] = proxy.supervisor.getPID()
        result["running"] = True
    except (OSError, xmlrpc.client.Fault) as exc:
        result["error"] = "supervisord not running (%s)" % exc.__class__.__name__
        return result, program_info
    try:
        info = proxy.supervisor.getProcessInfo(program)
    except xmlrpc.client.Fault as exc:
        program_info["state"] = "ABSENT"
        program_info["error"] = exc.faultString
        return result, program_info
    program_info["state"] = info["statename"]
    program_info["pid"] = info["pid"] or None
    if info["statename"] == "RUNNING" and info["start"]:
        program_info["uptime_seconds"] = max(0, info["now"] - info["start"])
    program_info["exitstatus"] = info.get("exitstatus")
    return result, program_info


def read_proc(pid, name):
    with open("/proc/%s/%s" % (pid, name), "rb") as handle:
        return handle.read()


def boot_time():
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def process_table():
    """pid -> (ppid, argv, start epoch) for every readable process."""
    ticks = os.sysconf("SC_CLK_TCK")
    booted = boot_time()
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = [a.decode("utf-8", "replace") for a in read_proc(entry, "cmdline").split(b"\0") if a]
            stat = read_proc(entry, "stat").decode()
        except OSError:
            continue
        # Fields after the command name, which may itself contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), argv, booted + int(fields[19]) / ticks)
    return table


def ella_image_of(argv):
    """The image an ELLA server process runs, or None when argv is no ELLA server."""
    images = [a for a in argv if a.endswith(".sif")]
    if not images or "ella-cli" in argv or "inspect" in argv or "exec" in argv:
        return None
    if "run" not in argv:
        return None
    return images[0]


def ella_processes(supervisord_pid):
    table = process_table()
    now = time.time()
    candidates = {pid: ella_image_of(argv) for pid, (_, argv, _) in table.items()}
    found = []
    for pid, image in sorted(candidates.items()):
        if image is None:
            continue
        ppid = table[pid][0]
        # The outermost ELLA process of a tree counts once (a wrapper and what it execs).
        if candidates.get(ppid):
            continue
        ancestors = set()
        walker = ppid
        while walker > 1 and walker in table and walker not in ancestors:
            ancestors.add(walker)
            walker = table[walker][0]
        resolved = os.path.realpath(image)
        found.append({
            "pid": pid,
            "image": resolved,
            "version": version_of(resolved),
            "supervised": bool(supervisord_pid) and supervisord_pid in ancestors,
            "uptime_seconds": int(now - table[pid][2]),
            "cmdline": " ".join(table[pid][1]),
        })
    return found


def symlink_state(image_link):
    state = {"path": image_link, "target": None, "resolved": None, "version": None}
    if os.path.islink(image_link):
        state["target"] = os.readlink(image_link)
        state["resolved"] = os.path.realpath(image_link)
        state["exists"] = os.path.exists(state["resolved"])
        state["version"] = version_of(state["resolved"])
    return state


def main():
    module = AnsibleModule(
        argument_spec=dict(
            supervisor_config=dict(type="path", required=True),
            program=dict(type="str", default="ella"),
            image_link=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    supervisord, program = supervisor_state(module.params["supervisor_config"], module.params["program"])
    report = {
        "hostname": socket.gethostname(),
        "supervisord": supervisord,
        "program": program,
        "processes": ella_processes(supervisord["pid"]),
        "symlink": symlink_state(module.params["image_link"]),
    }
    module.exit_json(changed=False, ella_host=report)


if __name__ == "__main__":
    main()
