#!/usr/bin/python
"""Ansible module: directories and whole files of ELLA's, written in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_files
short_description: Directories and files with a given content and mode, in one module run
description:
  - Does for a few small files what the file and template modules do, in one run on the
    host instead of two or three each (a stat, a copy, the attributes). The content is
    rendered on the controller with the template lookup.
  - A file is replaced atomically (a temporary file beside it with its mode, then a rename),
    and only when its content or mode differs; a directory is created, or its mode set.
  - Owner and group are those of the user the module runs as (become_user); with owner
    given, a path another user owns fails rather than being taken over.
  - The content never appears in the result (it may hold a password hash), so there is no diff.
options:
  directories:
    description: Created with missing parents (those with the default mode), each with its mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory.
        type: path
        required: true
      mode:
        description: Its mode, in octal.
        type: str
        required: true
  files:
    type: list
    elements: dict
    default: []
    description: Written whole (atomically) when their content or mode differs.
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      content:
        description: Its whole content (never shown in the result).
        type: str
        required: true
      mode:
        description: Its mode, in octal.
        type: str
        required: true
  owner:
    description: The user every path must belong to (normally the user the module runs as).
    type: str
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_atomic import write_atomic


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                mode=dict(type="str", required=True),
            )),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True, no_log=True),
                mode=dict(type="str", required=True),
            )),
            owner=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    changed = []
    try:
        for directory in params["directories"]:
            if _directory(module, directory["path"], _mode(module, directory), params["owner"]):
                changed.append(directory["path"])
        for item in params["files"]:
            if _file(module, item["path"], item["content"].encode(), _mode(module, item), params["owner"]):
                changed.append(item["path"])
    except OSError as error:
        module.fail_json(msg="%s: %s" % (error.filename, error.strerror), changed_paths=changed)
    module.exit_json(changed=bool(changed), changed_paths=changed)


def _mode(module, item):
    try:
        return int(item["mode"], 8)
    except ValueError:
        module.fail_json(msg="%s: mode %r is not octal" % (item["path"], item["mode"]))


def _check_owner(module, path, owner):
    if owner is None:
        return
    actual = pwd.getpwuid(os.lstat(path).st_uid).pw_name
    if actual != owner:
        module.fail_json(msg="%s belongs to %s, not %s" % (path, actual, owner))


def _directory(module, path, mode, owner):
    if os.path.isdir(path):
        _check_owner(module, path, owner)
        if os.stat(path).st_mode & 0o7777 == mode:
            return False
        if not module.check_mode:
            os.chmod(path, mode)
        return True
    if not module.check_mode:
        os.makedirs(path, mode)
        os.chmod(path, mode)  # (makedirs' mode passes the umask)
    return True


def _file(module, path, content, mode, owner):
    if os.path.lexists(path):
        _check_owner(module, path, owner)
        if os.path.islink(path) or not os.path.isfile(path):
            module.fail_json(msg="%s exists and is not a plain file" % path)
        with open(path, "rb") as current:
            same = current.read() == content
        if same and os.stat(path).st_mode & 0o7777 == mode:
            return False
        if same:
            if not module.check_mode:
                os.chmod(path, mode)
            return True
    if module.check_mode:
        return True
    write_atomic(path, content, mode)
    return True


if __name__ == "__main__":
    main()
