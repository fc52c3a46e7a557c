#!/usr/bin/python
"""Ansible module: ELLA's database operations that must be all or nothing."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_pg
short_description: Back up, verify, copy, restore and swap ELLA's database, all or nothing
description:
  - C(backup) dumps the database (pg_dump, an exported snapshot) and writes a manifest beside
    the dump with every table's row count in that snapshot; then reads the whole dump back.
  - C(verify) reads a dump back completely (pg_restore to /dev/null); with C(full), restores
    it into a scratch database, compares every table's row count with the manifest, drops it.
  - C(restore) restores a dump into a scratch database, proves it complete against the
    manifest, then puts it in place of the live database by renaming both in one
    transaction. A missing, truncated or damaged dump leaves the live database untouched.
  - C(restore_into) restores a dump into a new database C(database), proven complete (a
    rehearsal's scratch copy); the live database is not touched.
  - C(copy) makes a copy of the live database (or of C(source)) on the server (CREATE DATABASE ... TEMPLATE),
    C(swap) renames a copy into the live database's place (one transaction), C(drop) drops a
    database ella-deploy made, C(drop_copies) drops the copies of kind C(kind)
    (<db>_<kind>_<stamp>) but those in C(keep); C(state) reads the revision, size, sessions
    and the rollback points (rollback_copies).
  - C(run_file) runs the SQL file C(path) in one psql session on the live database and returns
    its exit code, the lines of its output that match C(output_filter) and its errors (a
    db-task's script, which ella-deploy wraps in its own transaction); the deploy lock is
    renewed while it runs.
  - C(prune) prunes the backups in the directory C(path) by what they are. A dump without its
    manifest (cut short) goes at once; of each kind (release, manual, task) the newest
    C(retain) stay; never one in C(keep_paths) or LAST_SUCCESSFUL, nor a backup of a release
    that C(audit_log) shows not yet accepted.
  - Connects as ELLA's login through PGPASSFILE; no password is passed or returned.
options:
  action:
    type: str
    required: true
    choices: [backup, verify, restore, restore_into, copy, swap, drop, drop_copies, state, run_file, prune]
  retain:
    description: With C(prune), how many backups of each kind stay (release, manual, task).
    type: dict
  keep_paths:
    description: With C(prune), backups never pruned (the last successful release's).
    type: list
    elements: str
    default: []
  audit_log:
    description: >-
      With C(prune), the environment's audit log: a release's backups are never pruned while
      it is not accepted.
    type: path
  output_filter:
    description: >-
      With C(run_file), the regular expression of the output lines returned (the rest is
      dropped on the host).
    type: str
    default: "^@@"
  url:
    description: libpq URL of the live database, without a password.
    type: str
    required: true
  pgpassfile:
    type: path
    required: true
  path:
    description: The dump (backup, verify, restore).
    type: path
  database:
    description: The other database (copy target, swap replacement, drop, backup source).
    type: str
  keep_as:
    description: Name the replaced live database keeps (swap, restore).
    type: str
  source:
    description: The database copy copies (default the live one).
    type: str
  keep_replaced:
    description: Keep the replaced live database after a restore.
    type: bool
    default: true
  format:
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    type: int
    default: 1
  full:
    description: verify by a full restore into a scratch database.
    type: bool
    default: false
  checksum:
    description: Also take the dump's sha256 (backup; its size is always measured).
    type: bool
    default: true
  kind:
    description: Which copies drop_copies drops.
    type: str
    choices: [rollback]
    default: rollback
  keep:
    description: Copies drop_copies keeps.
    type: list
    elements: str
    default: []
  lock:
    description: The deploy lock (path, token) this run holds, renewed while the module works.
    type: dict
"""

RETURN = r"""
backup:
  description: path, format, manifest (revision, row counts), sha256, size_bytes, seconds.
  returned: action=backup
  type: dict
"""

import re
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_lock import Heartbeat, LockError
from ansible.module_utils.ella_pg import (
    PgError, Server, checksum, dump, prune_backups, read_manifest, restore, restore_into, size_of, stamp,
    unaccepted_versions, verify_readable,
)


def do_backup(module, server):
    params = module.params
    manifest = dump(server, params["path"], database=params["database"], dump_format=params["format"],
                    jobs=params["jobs"])
    verify_seconds = verify_readable(server, params["path"])
    result = {"path": params["path"], "format": params["format"], "database": manifest["database"],
              "revision": manifest["revision"], "tables": manifest["tables"], "rows": manifest["rows"],
              "dump_seconds": manifest["dump_seconds"], "verify_seconds": verify_seconds,
              "verified": "read back completely", "sha256": None, "size_bytes": size_of(params["path"])}
    if params["checksum"]:
        result["sha256"], result["size_bytes"] = checksum(params["path"])
    if params["full"]:
        result.update(do_verify_full(server, params["path"]))
    return result


def do_verify_full(server, path):
    manifest = read_manifest(path) or {}
    scratch = "%s_verify_%s" % (server.database, stamp())
    started = time.monotonic()
    counts = restore_into(server, path, scratch, manifest.get("row_counts"))
    server.drop(scratch)
    return {"verified": "restored completely into a scratch database, row counts equal",
            "verify_restore_seconds": round(time.monotonic() - started, 2),
            "tables": len(counts), "rows": sum(counts.values())}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True,
                        choices=["backup", "verify", "restore", "restore_into", "copy", "swap", "drop", "drop_copies",
                                 "state", "run_file", "prune"]),
            source=dict(type="str"),
            url=dict(type="str", required=True),
            pgpassfile=dict(type="path", required=True),
            path=dict(type="path"),
            database=dict(type="str"),
            keep_as=dict(type="str"),
            keep_replaced=dict(type="bool", default=True),
            format=dict(type="str", choices=["custom", "directory"], default="custom"),
            jobs=dict(type="int", default=1),
            full=dict(type="bool", default=False),
            checksum=dict(type="bool", default=True),
            kind=dict(type="str", default="rollback", choices=["rollback"]),
            keep=dict(type="list", elements="str", default=[]),
            output_filter=dict(type="str", default="^@@"),
            retain=dict(type="dict"),
            keep_paths=dict(type="list", elements="str", default=[]),
            audit_log=dict(type="path"),
            lock=dict(type="dict", options=dict(path=dict(type="path"), token=dict(type="str", no_log=True))),
        ),
        required_if=[("action", "backup", ["path"]), ("action", "verify", ["path"]),
                     ("action", "restore", ["path"]), ("action", "copy", ["database"]),
                     ("action", "run_file", ["path"]), ("action", "prune", ["path", "retain"]),
                     ("action", "restore_into", ["path", "database"]),
                     ("action", "swap", ["database", "keep_as"]), ("action", "drop", ["database"])],
        supports_check_mode=False,
    )
    params = module.params
    lock = params["lock"] or {}
    try:
        with Heartbeat(lock.get("path"), lock.get("token")):
            result = run(module, params)
    except (PgError, LockError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


def run(module, params):
    """The action, as the module's result (changed plus what it says)."""
    server = Server(params["url"], params["pgpassfile"])
    action = params["action"]
    if action == "state":
        return dict(changed=False, state={
            "database": server.database, "exists": server.exists(server.database),
            "revision": server.revision(), "size_bytes": server.size(),
            "sessions": len(server.sessions(server.database)),
            "rollback_copies": server.copies("rollback")})
    if action == "backup":
        return dict(changed=True, backup=do_backup(module, server))
    if action == "verify":
        result = {"path": params["path"], "verify_seconds": verify_readable(server, params["path"]),
                  "verified": "read back completely"}
        if params["full"]:
            result.update(do_verify_full(server, params["path"]))
        return dict(changed=False, verify=result)
    if action == "restore":
        return dict(changed=True, restore=restore(server, params["path"], params["keep_replaced"]))
    if action == "restore_into":
        started = time.monotonic()
        counts = restore_into(server, params["path"], params["database"],
                              (read_manifest(params["path"]) or {}).get("row_counts"))
        return dict(changed=True, restore={"database": params["database"], "tables": len(counts),
                                           "rows": sum(counts.values()),
                                           "seconds": round(time.monotonic() - started, 2)})
    if action == "copy":
        started = time.monotonic()
        server.copy(params["source"] or server.database, params["database"])
        return dict(changed=True, copy={"database": params["database"],
                                        "seconds": round(time.monotonic() - started, 2)})
    if action == "swap":
        server.swap(params["database"], params["keep_as"])
        return dict(changed=True, swap={"live": server.database, "from": params["database"],
                                        "replaced_kept_as": params["keep_as"]})
    if action == "drop":
        existed = server.exists(params["database"])
        server.drop(params["database"])
        return dict(changed=existed)
    if action == "prune":
        removed = prune_backups(params["path"], params["retain"], params["keep_paths"],
                                unaccepted_versions(params["audit_log"]) if params["audit_log"] else ())
        return dict(changed=bool(removed["partial"] or removed["pruned"]), **removed)
    if action == "run_file":
        done = subprocess.run(["psql", "--no-psqlrc", "--no-password", "--dbname", server.url(), "--file",
                               params["path"]], env=server.env, capture_output=True, text=True)
        wanted = re.compile(params["output_filter"])
        # (Not `rc`: ansible-core fails a module whose result has a non-zero rc, and a failed
        # script is a result here, read by the task that wraps it.)
        return dict(changed=True, exit_code=done.returncode, stderr=done.stderr,
                    stdout="\n".join(line for line in done.stdout.splitlines() if wanted.search(line)))
    if action == "drop_copies":
        dropped = [name for name in server.copies(params["kind"]) if name not in params["keep"]]
        for name in dropped:
            server.drop(name)
        return dict(changed=bool(dropped), dropped=dropped)


if __name__ == "__main__":
    main()
