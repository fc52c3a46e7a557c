#!/usr/bin/python
"""Ansible module: the host side of the debug checklist, measured in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_check_facts
short_description: Measure load, memory, disks, ELLA's logs and response times on an ELLA host
description:
  - Reads only. Load average and cores, memory, free space of the given directories, the
    last minutes of ELLA's access log (requests, 5xx answers, tracebacks) and of other logs
    (tracebacks), and response times of ELLA URLs requested from this host.
  - Decides nothing: thresholds are applied by ella-deploy (ella_deploy/check.py).
options:
  disks:
    description: Directories whose file systems are measured, as label and path.
    type: list
    elements: dict
    default: []
  access_log:
    description: ELLA's access log (ella-prod/logs/api.log); empty to skip.
    type: path
    default: ""
  access_pattern:
    description: Regular expression of an access log line; its group `status` is the HTTP status.
    type: str
    default: '"[A-Z]+ \S+ HTTP/[0-9.]+" (?P<status>[0-9]{3}) '
  logs:
    description: Further logs searched for Python tracebacks.
    type: list
    elements: path
    default: []
  minutes:
    description: The window of the logs, in minutes back from now.
    type: int
    default: 15
  urls:
    description: URLs requested from this host, each `requests` times.
    type: list
    elements: str
    default: []
  requests:
    description: Requests per URL.
    type: int
    default: 5
  timeout:
    description: Seconds before a request counts as failed.
    type: float
    default: 5
"""

RETURN = r"""
ella_check:
  description: cores, load, mem_total_kb, mem_available_kb, disks, log, tracebacks, urls.
  returned: always
  type: dict
"""

import datetime
import os
import re
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_logs import window_lines

TRACEBACK = "Traceback (most recent call last)"


def meminfo():
    values = {}
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            values[name] = int(rest.split()[0])
    return values.get("MemTotal"), values.get("MemAvailable")


def disk(entry):
    path = entry.get("path", "")
    # A directory not made yet (no backup so far) will live on its parent's file system.
    measured = path
    while measured not in ("", "/") and not os.path.exists(measured):
        measured = os.path.dirname(measured)
    try:
        stat = os.statvfs(measured or "/")
    except OSError as error:
        return {"label": entry.get("label", path), "path": path, "free_bytes": None, "total_bytes": None,
                "error": f"{path}: {error.strerror}"}
    return {"label": entry.get("label", path), "path": path,
            "free_bytes": stat.f_bavail * stat.f_frsize, "total_bytes": stat.f_blocks * stat.f_frsize}


def access_log(path, pattern, since, minutes):
    report = {"file": path, "minutes": minutes, "requests": 0, "server_errors": 0, "tracebacks": 0,
              "newest_server_error": None, "error": None}
    try:
        for line in window_lines(path, since):
            if TRACEBACK in line:
                report["tracebacks"] += 1
            match = pattern.search(line)
            if match:
                report["requests"] += 1
                if match.group("status").startswith("5"):
                    report["server_errors"] += 1
                    report["newest_server_error"] = line[:300]
    except OSError as error:
        report["error"] = f"{path}: {error.strerror}"
    return report


def tracebacks(paths, since):
    found = {"count": 0, "newest": None, "errors": []}
    for path in paths:
        try:
            for line in window_lines(path, since):
                if TRACEBACK in line:
                    found["count"] += 1
                    found["newest"] = f"{os.path.basename(path)}: {line[:200]}"
        except FileNotFoundError:
            continue  # a log that was never written has no tracebacks
        except OSError as error:
            found["errors"].append(f"{path}: {error.strerror}")
    return found


def probe(url, count, timeout):
    result = {"url": url, "times_ms": [], "statuses": [], "errors": []}
    for _ in range(count):
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            result["errors"].append(str(getattr(reason, "strerror", None) or reason))
            continue
        result["times_ms"].append(round((time.monotonic() - started) * 1000, 1))
        result["statuses"].append(status)
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "disks": {"type": "list", "elements": "dict", "default": []},
            "access_log": {"type": "path", "default": ""},
            "access_pattern": {"type": "str", "default": '"[A-Z]+ \\S+ HTTP/[0-9.]+" (?P<status>[0-9]{3}) '},
            "logs": {"type": "list", "elements": "path", "default": []},
            "minutes": {"type": "int", "default": 15},
            "urls": {"type": "list", "elements": "str", "default": []},
            "requests": {"type": "int", "default": 5},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        pattern = re.compile(params["access_pattern"])
    except re.error as error:
        module.fail_json(msg=f"access_pattern: {error}")
    if "status" not in pattern.groupindex:
        module.fail_json(msg="access_pattern needs a group named status")
    since = time.time() - params["minutes"] * 60
    total_kb, available_kb = meminfo()
    facts = {
        "cores": len(os.sched_getaffinity(0)),
        "load": list(os.getloadavg()),
        "mem_total_kb": total_kb,
        "mem_available_kb": available_kb,
        "disks": [disk(entry) for entry in params["disks"]],
        "log": access_log(params["access_log"], pattern, since, params["minutes"]) if params["access_log"] else None,
        "tracebacks": tracebacks(params["logs"], since),
        "urls": [probe(url, params["requests"], params["timeout"]) for url in params["urls"]],
    }
    module.exit_json(changed=False, ella_check=facts)


if __name__ == "__main__":
    main()
