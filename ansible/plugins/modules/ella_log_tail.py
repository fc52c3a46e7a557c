#!/usr/bin/python
"""Ansible module: the last lines of one of ELLA's logs, or those of the last minutes."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_log_tail
short_description: The last lines of a log of ELLA, optionally only those of the last minutes
description:
  - Reads only. Knows the time stamps of ELLA's logs (its own and supervisord's in the
    host's local time, gunicorn's and nginx's with an offset); a line without a stamp (a
    traceback) stays with the line before it.
options:
  path:
    type: path
    required: true
  lines:
    description: At most this many lines, the newest.
    type: int
    default: 200
  since_seconds:
    description: Only lines of the last this many seconds (0 - no limit).
    type: int
    default: 0
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_logs import window_lines


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            lines=dict(type="int", default=200),
            since_seconds=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    since = time.time() - params["since_seconds"] if params["since_seconds"] > 0 else 0
    try:
        found = list(window_lines(params["path"], since)) if since else _tail(params["path"])
    except FileNotFoundError:
        module.fail_json(msg="%s does not exist (yet)" % params["path"])
    except OSError as error:
        module.fail_json(msg="%s: %s" % (params["path"], error.strerror))
    module.exit_json(changed=False, lines=found[-params["lines"]:])


def _tail(path):
    return list(window_lines(path, 0))


if __name__ == "__main__":
    main()
