#!/usr/bin/python
"""Ansible module: the per-environment deploy lock on the shared storage."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_lock
short_description: Take, release or read the deploy lock of an ELLA environment
description:
  - The lock is a directory created with mkdir(2), which is atomic on local and NFS
    file systems, holding holder.json (who, where, when, what, and a random token).
  - A second taker is refused with the holder named. A lock is only released by the
    token that took it; a stale lock is only broken when break_reason is given, and the
    broken holder is returned for the audit record.
options:
  path:
    description: Lock directory.
    type: path
    required: true
  state:
    description: present takes the lock, absent releases it, query only reads it.
    type: str
    choices: [present, absent, query]
    default: present
  holder:
    description: Who takes the lock (operator, controller, command, inventory, version).
    type: dict
    default: {}
  token:
    description: Token returned when the lock was taken; required for state=absent.
    type: str
  break_reason:
    description: Break an existing lock first (operator's explicit decision).
    type: str
"""

import datetime
import json
import os
import secrets
import shutil

from ansible.module_utils.basic import AnsibleModule


def read_holder(path):
    try:
        with open(os.path.join(path, "holder.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        # mkdir happened, holder.json not yet (or unreadable): still held.
        return {"operator": "unknown", "note": "lock directory without readable holder.json"}


def describe(holder):
    return "%s on %s since %s (%s)" % (
        holder.get("operator", "?"), holder.get("controller", "?"),
        holder.get("since", "?"), holder.get("command", "?"),
    )


def public(holder):
    """The holder as others may see it: never the token that releases the lock."""
    return {key: value for key, value in holder.items() if key != "token"}


def take(module, path, holder):
    held = os.path.isdir(path)
    breaking = bool(module.params["break_reason"]) and held
    if module.check_mode:
        if held and not breaking:
            module.fail_json(msg="deploy lock held by " + describe(read_holder(path)), holder=public(read_holder(path)))
        module.exit_json(changed=True, token=None, broken=public(read_holder(path)) if breaking else None)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    broken = None
    if breaking:
        broken = public(read_holder(path))
        broken["break_reason"] = module.params["break_reason"]
        # Kept beside the lock for the record; the suffix is unique even within one second.
        os.rename(path, "%s.broken-%s-%s" % (
            path, datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%S"), secrets.token_hex(4)))
    try:
        os.mkdir(path, 0o750)
    except FileExistsError:
        holder_now = read_holder(path)
        module.fail_json(
            msg="deploy lock held by %s; if that run is gone, break the lock explicitly (--break-lock REASON)"
            % describe(holder_now),
            holder=public(holder_now),
        )
    record = dict(holder)
    record["token"] = secrets.token_hex(16)
    record["since"] = datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z"
    record["pid"] = os.getpid()
    temporary = os.path.join(path, ".holder.json.tmp")
    with open(temporary, "w") as handle:
        json.dump(record, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, os.path.join(path, "holder.json"))
    module.exit_json(changed=True, token=record["token"], holder=public(record), broken=broken)


def release(module, path, token):
    if not os.path.isdir(path):
        module.exit_json(changed=False, msg="lock not held")
    holder = read_holder(path)
    if holder.get("token") != token:
        module.fail_json(msg="deploy lock is held by someone else: " + describe(holder), holder=public(holder))
    if not module.check_mode:
        shutil.rmtree(path)
    module.exit_json(changed=True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "absent", "query"], default="present"),
            holder=dict(type="dict", default={}),
            token=dict(type="str", no_log=True),
            break_reason=dict(type="str"),
        ),
        required_if=[("state", "absent", ["token"])],
        supports_check_mode=True,
    )
    path = module.params["path"]
    if module.params["state"] == "query":
        held = os.path.isdir(path)
        module.exit_json(changed=False, held=held, holder=public(read_holder(path)) if held else None)
    if module.params["state"] == "absent":
        release(module, path, module.params["token"])
    take(module, path, module.params["holder"])


if __name__ == "__main__":
    main()
