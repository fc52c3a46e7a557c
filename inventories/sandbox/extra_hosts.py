#!/usr/bin/env python3
"""Benchmark hosts of the sandbox: ELLA_SANDBOX_EXTRA_HOSTS=N adds N more ELLA VMs on the same
shared storage and database (p22-ella-x01 ... at 10.213.22.31 ...), for the growth benchmark
(benchmarks/release.py). None unless asked. ella_deploy/sandbox.py creates their containers
from the same rule (extra_hosts())."""

import json
import os
import sys

count = int(os.environ.get("ELLA_SANDBOX_EXTRA_HOSTS") or 0)
hosts = {f"p22-ella-x{number:02d}": {"ansible_host": f"10.213.22.{30 + number}"} for number in range(1, count + 1)}
if len(sys.argv) > 1 and sys.argv[1] == "--host":
    print(json.dumps(hosts.get(sys.argv[2], {}) if len(sys.argv) > 2 else {}))
else:
    print(json.dumps({"ella_hosts": {"hosts": sorted(hosts)}, "_meta": {"hostvars": hosts}}))
