#!/usr/bin/python
"""Ansible module: what a release plan reads on the host, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_plan_facts
short_description: Read what the plan of an ELLA release needs from the host, in one round trip
description:
  - Reads only. The live symlink; the new image's sha256, its published .sha256 if any, and
    whether Singularity can read it; the same of the image the live symlink points to (the
    rollback target, to which a release must be able to go back); the fixture files'
    checksums and the record of their last
    apply; the release journal; the deploy lock; the database's size and the sessions other
    logins have open on it (they would block the rollback point); whether ELLA's login may
    make and drop its copies (CREATE DATABASE, owning the live database); the free space for
    the release's backup.
options:
  image:
    type: path
    required: true
  link:
    type: path
    required: true
  fixtures_dir:
    type: path
    required: true
  fixture_files:
    description: name -> file name in fixtures_dir.
    type: dict
    required: true
  fixtures_record:
    type: path
    required: true
  journal_dir:
    type: path
    required: true
  lock_path:
    type: path
    required: true
  db_url:
    type: str
    required: true
  pgpassfile:
    type: path
    required: true
  backup_dir:
    type: path
    required: true
"""

import hashlib
import json
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_lock import heartbeat_age, holder_gone, public, read_holder
from ansible.module_utils.ella_pg import PgError, Server


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"unreadable": True}


def image_facts(image):
    facts = {"exists": os.path.isfile(image), "sha256": None, "published_sha256": "", "inspect_error": None}
    if not facts["exists"]:
        return facts
    facts["sha256"] = sha256(image)
    try:
        with open(image + ".sha256") as handle:
            facts["published_sha256"] = (handle.read().split() or [""])[0]
    except FileNotFoundError:
        pass
    done = subprocess.run(["singularity", "inspect", image], capture_output=True, text=True)
    if done.returncode != 0:
        facts["inspect_error"] = (done.stderr or done.stdout).strip()[-300:] or "exit %d" % done.returncode
    return facts


def free_bytes(path):
    while path not in ("", "/") and not os.path.exists(path):
        path = os.path.dirname(path)
    stat = os.statvfs(path or "/")
    return stat.f_bavail * stat.f_frsize


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image=dict(type="path", required=True),
            link=dict(type="path", required=True),
            fixtures_dir=dict(type="path", required=True),
            fixture_files=dict(type="dict", required=True),
            fixtures_record=dict(type="path", required=True),
            journal_dir=dict(type="path", required=True),
            lock_path=dict(type="path", required=True),
            db_url=dict(type="str", required=True),
            pgpassfile=dict(type="path", required=True),
            backup_dir=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    link = params["link"]
    fixtures = {}
    for name, filename in params["fixture_files"].items():
        path = os.path.join(params["fixtures_dir"], filename)
        fixtures[name] = sha256(path) if os.path.isfile(path) else None
    held = os.path.isdir(params["lock_path"])
    holder = read_holder(params["lock_path"]) if held else None
    age = heartbeat_age(params["lock_path"]) if held else None
    target = os.readlink(link) if os.path.islink(link) else ""
    facts = {
        "link_target": target,
        "image": image_facts(params["image"]),
        # What a rollback would point the symlink back to: present, intact, readable.
        "previous_image": (dict(image_facts(os.path.join(os.path.dirname(link), target)),
                                path=os.path.normpath(os.path.join(os.path.dirname(link), target)))
                           if target else None),
        "fixtures": fixtures,
        "fixtures_recorded": read_json(params["fixtures_record"]) or {},
        "journal": read_json(os.path.join(params["journal_dir"], "journal.json")),
        "lock": {"held": held, "holder": public(holder) if held else None,
                 "heartbeat_age": None if age is None else round(age, 1),
                 "gone": holder_gone(holder, age) if held else None},
        "backup_free_bytes": free_bytes(params["backup_dir"]),
    }
    try:
        server = Server(params["db_url"], params["pgpassfile"])
        facts["database_bytes"] = server.size()
        # Sessions of other logins would block the rollback point, which the window makes after
        # ELLA stops: said now, before anything stops.
        own = server.login()
        # What the window and its rollback need of ELLA's login: CREATE DATABASE (the rollback
        # point is a copy the server makes) and owning the live database (the rollback renames
        # it and drops the failed one; its own copies it owns as their maker).
        createdb, superuser, owner = server.maintenance(
            "SELECT r.rolcreatedb, r.rolsuper, pg_get_userbyid(d.datdba) FROM pg_roles r, pg_database d "
            "WHERE r.rolname = current_user AND d.datname = %s", (server.database,))[0]
        facts["db_privileges"] = {"login": own, "createdb": bool(createdb or superuser),
                                  "owns_database": bool(superuser or owner == own), "owner": owner}
        facts["foreign_sessions"] = [{"login": row[3], "address": row[1], "application": row[2], "seconds": row[4]}
                                     for row in server.sessions(server.database) if row[3] != own]
    except PgError as error:
        module.fail_json(msg="plan: %s" % error)
    module.exit_json(changed=False, plan_facts=facts)


if __name__ == "__main__":
    main()
