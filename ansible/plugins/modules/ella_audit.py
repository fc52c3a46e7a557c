#!/usr/bin/python
"""Ansible module: append one record to the environment's audit log."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_audit
short_description: Append a JSON record to the append-only audit log of an ELLA environment
description:
  - One line of JSON per command that changed anything, written with a single
    O_APPEND write and fsync, under an exclusive lock of the file, so concurrent writers
    never interleave lines.
  - Each record carries C(prev), the sha256 of the line before it (its bytes, without the
    newline; empty for the first), so an edited, removed or inserted line shows
    (C(ella-deploy history --verify)). A last line torn by a crash (no newline) is closed
    with one before the record is appended, and chained like any other line.
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
import fcntl
import hashlib
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
    record.pop("prev", None)
    if module.check_mode:
        module.exit_json(changed=True, record=record)
    path = module.params["path"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        last, closed = last_line(descriptor)
        record["prev"] = hashlib.sha256(last).hexdigest() if last is not None else ""
        line = (b"" if closed else b"\n") + (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    module.exit_json(changed=True, record=record)


def last_line(descriptor, block=65536):
    """The file's last line (bytes, without its newline; None for an empty file) and whether
    it ends with a newline (a write torn by a crash does not)."""
    size = os.fstat(descriptor).st_size
    if size == 0:
        return None, True
    closed = os.pread(descriptor, 1, size - 1) == b"\n"
    end = size - 1 if closed else size
    tail, position = b"", end
    while position > 0:
        start = max(0, position - block)
        tail = os.pread(descriptor, position - start, start) + tail
        position = start
        if b"\n" in tail:
            break
    return tail.rsplit(b"\n", 1)[-1], closed


if __name__ == "__main__":
    main()
