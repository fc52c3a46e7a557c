#!/usr/bin/python
"""Ansible module: the per-environment deploy lock on the shared storage."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_lock
short_description: Take, renew, release or read the deploy lock of an ELLA environment
description:
  - The lock is a directory created with mkdir(2), atomic on local and NFS file systems,
    holding holder.json (who, from which controller and process, since when, the lease) and
    a heartbeat file its holder renews (state=heartbeat, and the long-running ella-deploy
    modules while they run).
  - A second taker is refused with the holder named. Only the token that took the lock
    renews or releases it. With break_reason, a held lock is broken only when its holder is
    gone (no heartbeat within the lease, or controller_gone and no heartbeat for a while),
    by a compare-and-swap rename; the broken holder is returned for the audit record.
options:
  path:
    description: Lock directory.
    type: path
    required: true
  state:
    description: present takes the lock, absent releases it, heartbeat renews it, query reads it.
    type: str
    choices: [present, absent, heartbeat, query]
    default: present
  holder:
    description: Who takes the lock (operator, controller, controller_pid, command, environment, version).
    type: dict
    default: {}
  token:
    description: The holder's secret, made by the caller; required but for query (which says
      whether the lock is held with it). Taking a lock held with the same token takes it over.
    type: str
  lease_seconds:
    description: A lock not renewed for this long has no holder any more.
    type: int
    default: 90
  break_reason:
    description: Break a lock whose holder is gone first (the operator's reason, audited).
    type: str
  controller_gone:
    description: What the caller's controller knows - the holder's process on it has ended.
    type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_lock import (
    LockError, heartbeat_age, holder_gone, public, read_holder, release, renew, renewers, take,
)
import os


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "absent", "heartbeat", "query"], default="present"),
            holder=dict(type="dict", default={}),
            token=dict(type="str", no_log=True),
            lease_seconds=dict(type="int", default=90),
            break_reason=dict(type="str"),
            controller_gone=dict(type="str"),
        ),
        required_if=[("state", "present", ["token"]), ("state", "absent", ["token"]),
                     ("state", "heartbeat", ["token"])],
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    try:
        if params["state"] == "query":
            held = os.path.isdir(path)
            holder = read_holder(path) if held else None
            age = heartbeat_age(path) if held else None
            module.exit_json(changed=False, held=held, holder=public(holder) if held else None,
                             heartbeat_age=None if age is None else round(age, 1),
                             gone=holder_gone(holder, age, params["controller_gone"], renewers(path))
                             if held else None,
                             ours=bool(held and params["token"] and holder.get("token") == params["token"]))
        if module.check_mode:
            module.exit_json(changed=False)
        if params["state"] == "heartbeat":
            renew(path, params["token"])
            module.exit_json(changed=False)
        if params["state"] == "absent":
            module.exit_json(changed=release(path, params["token"]))
        record, broken = take(path, params["holder"], params["token"], params["lease_seconds"],
                              params["break_reason"] or "", params["controller_gone"])
        module.exit_json(changed=True, holder=record, broken=broken)
    except LockError as error:
        module.fail_json(msg=str(error), holder=error.holder)
    except OSError as error:
        module.fail_json(msg="deploy lock %s: %s" % (path, error))


if __name__ == "__main__":
    main()
