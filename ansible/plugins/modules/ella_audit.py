#!/usr/bin/python
"""Ansible module: append one record to the environment's audit log."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_audit
short_description: Append a JSON record to the append-only audit log of an ELLA environment
description:
  - One line of JSON per command that changed anything, written with a single
    O_APPEND write and fsync, so concurrent writers never interleave lines.
  - The module never rewrites or truncates the file.
options:
  path:
    description: The audit log (JSON lines) on the shared storage.
    type: path
    required: true
  record:
    description: The record. Must hold no secret.
    type: dict
    required: true
"""

import datetime
import json
import os

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type="path", required=True), record=dict(type="dict", required=True)),
        supports_check_mode=True,
    )
    record = dict(module.params["record"])
    record.setdefault("recorded", datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z")
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    if module.check_mode:
        module.exit_json(changed=True, record=record)
    path = module.params["path"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    module.exit_json(changed=True, record=record)


if __name__ == "__main__":
    main()
