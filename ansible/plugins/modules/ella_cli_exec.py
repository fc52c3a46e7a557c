#!/usr/bin/python
"""Ansible module: one ella-cli command inside an ELLA image, as ELLA runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_cli_exec
short_description: Run ella-cli in an ELLA image with ELLA's binds and environment
description:
  - Runs C(singularity exec [binds] IMAGE ella-cli ARGS) with ELLA's environment (the
    ella_run role's one definition), text on stdin for ELLA's reason prompts.
  - C(expect) reads the output of the commands ella-deploy relies on, because ELLA exits 0
    when it did nothing; C(compare) reads C(database compare), which exits 1 on a mismatch
    and on a crash alike.
options:
  image:
    type: path
    required: true
  args:
    type: list
    elements: str
    default: []
  singularity_args:
    type: list
    elements: str
    default: []
  environment:
    type: dict
    default: {}
  stdin:
    type: str
    default: ""
  expect:
    description:
      - How to read the output; C(compare) and the broadcasts fail when it does not say success.
      - C(migration) reads C(database upgrade head) (the migrations started; on failure one line
        naming the one it failed in) and leaves the verdict to the caller, with C(rc).
    type: str
    choices: [none, compare, broadcast_new, broadcast_deactivate, broadcast_list, migration]
    default: none
  changes:
    description: Whether the command changes ELLA's data.
    type: bool
    default: true
  timeout:
    type: int
    default: 3600
  lock:
    description: The deploy lock (path, token) this run holds, renewed while the module works.
    type: dict
  private_output:
    description: >-
      What ella-cli prints may hold a credential (users reset_password prints the new
      password): it is written to a file of its own on the host (0600, in the temporary
      directory) instead of the result, so it never reaches Ansible's output, events or
      ansible-runner's artifacts; the caller reads it once over its own SSH connection and
      removes it. Only with expect none.
    type: bool
    default: false
"""

RETURN = r"""
rc: {description: exit code, returned: always, type: int}
stdout: {description: what ella-cli printed (empty with private_output), returned: always, type: str}
stderr: {description: its stderr (empty with private_output), returned: always, type: str}
output_file:
  description: With private_output, the file on the host holding stdout and stderr (JSON, 0600, the service user's).
  returned: when private_output
  type: str
parsed: {description: what the output means (revision/head/pending, broadcast_id), returned: always, type: dict}
seconds: {description: how long ella-cli ran, returned: when it ran, type: float}
"""

import json
import os
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_lock import Heartbeat, LockError
from ansible.module_utils.ella_host import compare, ella_cli, interpret


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image=dict(type="path", required=True),
            args=dict(type="list", elements="str", default=[]),
            singularity_args=dict(type="list", elements="str", default=[]),
            environment=dict(type="dict", default={}),
            stdin=dict(type="str", default=""),
            expect=dict(type="str", default="none",
                        choices=["none", "compare", "broadcast_new", "broadcast_deactivate", "broadcast_list", "migration"]),
            changes=dict(type="bool", default=True),
            timeout=dict(type="int", default=3600),
            lock=dict(type="dict", options=dict(path=dict(type="path"), token=dict(type="str", no_log=True))),
            private_output=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    lock = params["lock"] or {}
    try:
        with Heartbeat(lock.get("path"), lock.get("token")):
            result = run(module, params)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, LockError) as error:
        module.fail_json(msg=str(error), rc=None, stdout="", stderr="", parsed={})
    module.exit_json(**result)


def run(module, params):
    """What the command did, as the module's result."""
    if params["expect"] == "compare":
        parsed = compare(params["image"], params["singularity_args"], params["environment"])
        return dict(changed=False, rc=0, stdout="", stderr="", parsed=parsed)
    if module.check_mode and params["changes"]:
        return dict(changed=False, skipped=True, rc=0, stdout="", stderr="", parsed={})
    started = time.monotonic()
    done = ella_cli(params["image"], params["args"], params["singularity_args"], params["environment"],
                    stdin=params["stdin"], timeout=params["timeout"])
    if params["private_output"] and params["expect"] == "none":
        descriptor, path = tempfile.mkstemp(prefix="ella-cli-output-", suffix=".json")
        with os.fdopen(descriptor, "w") as handle:  # mkstemp: 0600, this (the service) user's
            json.dump({"stdout": done.stdout, "stderr": done.stderr}, handle)
        return dict(changed=params["changes"] and done.returncode == 0, rc=done.returncode, stdout="", stderr="",
                    output_file=path, parsed={}, seconds=round(time.monotonic() - started, 2))
    # A plain command reports its exit code and the caller decides; an `expect` fails unless
    # ELLA said it did it.
    return dict(changed=params["changes"] and done.returncode == 0, rc=done.returncode, stdout=done.stdout,
                stderr=done.stderr, parsed=interpret(params["expect"], done),
                seconds=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
