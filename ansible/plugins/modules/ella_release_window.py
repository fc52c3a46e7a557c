#!/usr/bin/python
"""Ansible module: the release's downtime window on the host, each step beside its undo,
with a journal that says at every moment how far it came."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_release_window
short_description: Run, undo, start and record the steps of an ELLA release on its host
description:
  - >-
    C(forward) runs the steps between stopping ELLA and starting the new version in one
    round trip: stop ELLA (supervisord), make the rollback point (a copy of the database by
    the server, CREATE DATABASE ... TEMPLATE, which needs every session gone and is
    checked against the live database's tables and revision), switch the live symlink,
    migrate (C(ella-cli database upgrade head) in the new image), apply changed fixtures
    (usergroups, filterconfigs). Nothing is written before the rollback point exists.
  - >-
    C(rollback) undoes what the journal says was done, before the new version went live:
    stops ELLA, points the symlink back, and when the database may have been written to,
    renames the rollback point into the live database's place in one transaction (all or
    nothing); ELLA stays stopped (the playbook runs the guard, then C(start)).
  - >-
    C(start) starts ELLA through supervisord and waits until it serves: ELLA's own
    programs inside the image RUNNING, its API answering, the running process holding the
    expected image. With C(go_live), success is the release's line: from then on nothing
    restores data; a cancel request before that line (written before the start or while
    its health gate waits) stops ELLA again and fails the start: the new version never
    served.
  - >-
    C(stop) stops the program and ends every other ELLA server process on the host (run as
    root to end another user's). C(health) only waits until ELLA serves; C(finish) records
    the end in the journal;
    C(state) reads it; with C(wait_idle), first waits (up to C(wait_seconds)) until no
    other process acts on the release, so that what it reads is final; with C(cancel)
    (after an operator's interrupt), it first asks that process to stop at its next step
    boundary.
  - >-
    The journal (journal.json in journal_dir) is rewritten atomically at every step, so an
    interrupted run is recovered from it (ella-deploy recover). SIGHUP is ignored: a lost
    SSH connection does not stop the window halfway; a cancel request (the file C(cancel)
    in journal_dir) stops it at the next step boundary. One process at a time acts on a
    journal (flock on journal.lock)."
options:
  action:
    type: str
    required: true
    choices: [forward, rollback, start, stop, health, finish, state]
  journal_dir:
    type: path
    required: true
  release:
    description: What forward does (id, version, image, link, target, previous_target,
      migrate, head, rollback_database, fixtures, fixtures_record, fixtures_record_new, ...).
    type: dict
  supervisor_config:
    type: path
  program:
    type: str
    default: ella
  singularity_args:
    description: The binds with which ELLA runs (the ella_run role's one definition).
    type: list
    elements: str
    default: []
  environment:
    description: ELLA's environment (SINGULARITYENV_ names; no secrets).
    type: dict
    default: {}
  db_url:
    type: str
  pgpassfile:
    type: path
  reason:
    description: What ella-cli records as the reason of its changes (clilog).
    type: str
    default: ella-deploy release
  health:
    description: url, timeout, interval, inner_supervisor_config, socket_dir, expected_image.
    type: dict
    default: {}
  go_live:
    type: bool
    default: false
  outcome:
    description: The outcome C(finish) records.
    type: str
  wait_idle:
    description: With C(state), wait until no module acts on the journal (its flock is free) first.
    type: bool
    default: false
  cancel:
    description: >-
      With C(state) and C(wait_idle), write the cancel request first (and remove it once no
      process acts on the journal), so that a window or a start of an interrupted run stops
      at its next step boundary instead of going on to go-live.
    type: bool
    default: false
  served:
    description: >-
      With C(state), also read from ELLA's own tables what the live database served since the
      open release's window (requests of logged-in users, writes, ella-cli changes after the
      rollback point was made): recover never restores over that.
    type: bool
    default: false
  wait_seconds:
    description: How long C(rollback) waits for a running window to reach a step boundary, and
      C(state) with C(wait_idle) for a running step to end.
    type: float
    default: 900
  journal_id:
    description: C(rollback) acts only on the journal of this release.
    type: str
  lock:
    description: >-
      The deploy lock (path, token) this run holds; renewed while the window, a start or a
      rollback runs, and the window stops at the next step boundary when it is lost. With it,
      C(start) writes this host's start permit inside the lock (start-permit-HOST), without
      which ELLA's program command (start-ella.sh) refuses to start ELLA while the lock is
      held; every stop on this host removes the permit.
    type: dict
"""

RETURN = r"""
journal:
  description: The journal after the action.
  returned: always
  type: dict
served:
  description: >-
    What the live database served since the window (requests, writes, users, cli_changes,
    first, last, served, summary); null when no open release has a rollback point.
  returned: action=state with served
  type: dict
"""

import errno
import fcntl
import json
import os
import signal
import socket
import time
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ella_atomic import write_atomic
from ansible.module_utils.ella_host import (
    Supervisor, ella_cli, ella_processes, end_ella, inner_programs, last_line, switch_symlink, upgrade_report,
)
from ansible.module_utils.ella_lock import Heartbeat, LockError
from ansible.module_utils.ella_pg import PgError, Server, stamp

# Steps after which the live database may differ from the rollback point.
WRITING_STEPS = ("migrate", "fixtures", "start")
# The migration, as ella-cli's arguments (and as ELLA's clilog records the command).
MIGRATE = ["database", "upgrade", "head"]


class WindowError(Exception):
    """A step failed; the message says which and why, in one line."""


class Journal:
    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, "journal.json")
        self.cancel_path = os.path.join(directory, "cancel")
        self.lock_handle = None
        self.data = {}

    def lock(self, wait_seconds=0.0):
        os.makedirs(self.directory, exist_ok=True)
        self.lock_handle = open(os.path.join(self.directory, "journal.lock"), "a")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(self.lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    raise WindowError("another ella-deploy process is acting on this release (journal.lock held)")
                time.sleep(0.2)

    def read(self):
        try:
            with open(self.path) as handle:
                self.data = json.load(handle)
        except FileNotFoundError:
            self.data = {}
        return self.data

    def write(self):
        self.data["updated"] = time.time()
        write_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def step(self, name):
        return next((s for s in self.data.get("steps", []) if s["step"] == name), None)

    def begin(self, name):
        self.data.setdefault("steps", []).append({"step": name, "state": "started", "started": time.time()})
        self.write()

    def end(self, name, state="done", **detail):
        entry = self.step(name)
        entry.update(state=state, finished=time.time(), **detail)
        self.write()

    def reached(self, names):
        return [s["step"] for s in self.data.get("steps", []) if s["step"] in names]

    def cancelled(self):
        return os.path.exists(self.cancel_path)

    def lock_cancelling(self, wait_seconds):
        """The journal's lock, after asking whoever holds it to stop at its next step boundary
        (the request is withdrawn once the lock is ours: nothing else acts then)."""
        write_atomic(self.cancel_path, "%s\n" % time.time())
        try:
            self.lock(wait_seconds)
        finally:
            if os.path.exists(self.cancel_path):
                os.unlink(self.cancel_path)


class Window:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.journal = Journal(self.params["journal_dir"])
        self.supervisor = Supervisor(self.params["supervisor_config"]) if self.params["supervisor_config"] else None
        self.heartbeat = None

    # ---- helpers --------------------------------------------------------------------------
    def server(self):
        return Server(self.params["db_url"] or self.journal.data["db_url"],
                      self.params["pgpassfile"] or self.journal.data["pgpassfile"])

    def run_step(self, name, action):
        if self.heartbeat is not None and self.heartbeat.lost:
            self.journal.data["phase"] = "cancelled"
            self.journal.data["cancelled_before"] = name
            self.journal.write()
            raise WindowError("stopped before step %s: %s" % (name, self.heartbeat.lost))
        if self.journal.cancelled():
            self.journal.data["phase"] = "cancelled"
            self.journal.data["cancelled_before"] = name
            self.journal.write()
            raise WindowError("cancelled by the operator before step %s" % name)
        self.journal.begin(name)
        try:
            detail = action() or {}
        except Exception as error:  # noqa: BLE001 - every failure is recorded, then reported
            message = str(error) or error.__class__.__name__
            self.journal.end(name, state="failed", error=message[:500])
            raise WindowError("step %s: %s" % (name, message)) from None
        self.journal.end(name, **detail)

    def cli(self, image, args, stdin=None, timeout=None):
        return ella_cli(image, args, self.params["singularity_args"] or self.journal.data.get("singularity_args"),
                        self.params["environment"] or self.journal.data.get("environment"), stdin=stdin,
                        timeout=timeout)

    def permit(self):
        """This host's start permit inside the deploy lock: ELLA's program command
        (start-ella.sh) lets a start go on while the lock is held only with it."""
        return os.path.join(self.params["journal_dir"], "lock", "start-permit-" + socket.gethostname().split(".")[0])

    def stop_ella(self):
        """No ELLA on this host afterwards: supervisord stops its program, then whatever it
        left (a hung gunicorn worker outlives its master) is ended. This host's start permit
        goes first: nothing restarts it under the lock meanwhile."""
        if os.path.exists(self.permit()):
            os.unlink(self.permit())
        self.supervisor.stop(self.params["program"])
        ended = end_ella()
        return {"ended_strays": ended} if ended else {}

    # ---- forward --------------------------------------------------------------------------
    def forward(self):
        release = self.params["release"]
        self.journal.lock()
        self.journal.read()
        if self.journal.data and self.journal.data.get("phase") not in ("done", None):
            raise WindowError("the journal of release %s (%s) is not finished: run `ella-deploy recover` first"
                              % (self.journal.data.get("version"), self.journal.data.get("phase")))
        if os.path.exists(self.journal.cancel_path):
            os.unlink(self.journal.cancel_path)
        self.journal.data = dict(release, phase="window", steps=[], window_pid=os.getpid(),
                                 singularity_args=self.params["singularity_args"],
                                 environment=self.params["environment"], db_url=self.params["db_url"],
                                 pgpassfile=self.params["pgpassfile"], program=self.params["program"],
                                 supervisor_config=self.params["supervisor_config"], started=time.time())
        self.journal.write()
        server = self.server()
        self.run_step("stop", self.stop_ella)
        self.run_step("rollback_point", lambda: self.rollback_point(server, release))
        self.run_step("switch", lambda: self.switch(release))
        if release.get("migrate"):
            self.run_step("migrate", lambda: self.migrate(server, release))
        if release.get("fixtures"):
            self.run_step("fixtures", lambda: self.fixtures(release))
        # ELLA's own logs as the window leaves them: what comes after is not the release's.
        self.journal.data["log_marks"] = server.log_marks()
        self.journal.data["phase"] = "window_done"
        self.journal.write()

    def rollback_point(self, server, release):
        started = time.monotonic()
        name = release["rollback_database"]
        # ELLA is stopped; what it held open goes within seconds (ended if not). Another
        # login's session is never ended: the step fails naming it, before anything is written.
        ended = server.end_own_sessions(server.database, wait_seconds=float(release.get("session_grace", 10)))
        server.copy(server.database, name)
        live_tables = server.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        copy_tables = server.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                                   database=name)
        live_revision, copy_revision = server.revision(), server.revision(name)
        if live_tables != copy_tables or live_revision != copy_revision:
            raise WindowError("the rollback point %s differs from the live database (tables %s/%s, revision %s/%s)"
                              % (name, copy_tables[0][0], live_tables[0][0], copy_revision, live_revision))
        self.journal.data["rollback_point"] = {"database": name, "revision": live_revision,
                                               "tables": live_tables[0][0], "size_bytes": server.size(name)}
        result = {"seconds": round(time.monotonic() - started, 2), "database": name}
        if ended:
            result["ended_sessions"] = ended
        return result

    def switch(self, release):
        """The live symlink and, when the release brings one, ELLA's configuration: the
        candidate the new image checked in the plan takes the live file's place (rename), the
        live one is kept beside it for a rollback."""
        config = release.get("config")
        if config:
            if os.path.exists(config["live"]):
                write_atomic(config["previous"], read_file(config["live"]))
            os.rename(config["candidate"], config["live"])
            self.journal.data["config_switched"] = True
            self.journal.write()
        switch_symlink(release["link"], release["target"])
        return {"target": release["target"], "config": bool(config)}

    def migrate(self, server, release):
        done = self.cli(release["image"], MIGRATE, timeout=release.get("migrate_timeout"))
        report = upgrade_report(done)
        if report["error"]:
            raise WindowError(report["error"])
        applied = report["applied"]
        revision = server.revision()
        if release.get("head") and revision != release["head"]:
            raise WindowError("after the migration the database is at %s, the image's head is %s"
                              % (revision, release["head"]))
        return {"revision": revision, "applied": applied}

    def fixtures(self, release):
        applied = []
        for fixture in release["fixtures"]:
            done = self.cli(release["image"], fixture["command"], stdin=self.params["reason"] + "\n", timeout=600)
            if done.returncode != 0:
                raise WindowError("ella-cli %s exited %d: %s" % (" ".join(fixture["command"][:2]), done.returncode,
                                                                 last_line(done.stderr or done.stdout)))
            applied.append(fixture["name"])
        record = release["fixtures_record"]
        try:
            with open(record) as handle:
                self.journal.data["fixtures_record_before"] = handle.read()
        except FileNotFoundError:
            self.journal.data["fixtures_record_before"] = None
        self.journal.write()
        write_atomic(record, json.dumps(release["fixtures_record_new"], indent=2, sort_keys=True) + "\n")
        return {"applied": applied}

    # ---- rollback -------------------------------------------------------------------------
    def rollback(self):
        # A window (or a go-live start) still running stops at its next step boundary.
        self.journal.lock_cancelling(self.params["wait_seconds"])
        journal = self.journal.read()
        if not journal:
            raise WindowError("no release journal: nothing to roll back")
        if self.params["journal_id"] and journal.get("id") != self.params["journal_id"]:
            raise WindowError("the journal is of release %s, not of %s: nothing rolled back"
                              % (journal.get("id"), self.params["journal_id"]))
        if journal.get("phase") in ("live", "done"):
            raise WindowError("release %s went live (%s): nothing is restored over what users wrote since"
                              % (journal.get("version"), journal.get("phase")))
        self.supervisor = Supervisor(journal["supervisor_config"])
        self.params["program"] = journal.get("program", self.params["program"])
        server = self.server()
        done = {"stopped": True, "symlink": None, "database": None}
        self.stop_ella()
        point = (journal.get("rollback_point") or {}).get("database")
        written = self.journal.reached(WRITING_STEPS)
        # Each database step of the rollback is written down before it acts, so that a rerun
        # (after a database restart, a host crash, between the swap and the next write)
        # recognises what is done instead of calling the rollback point missing.
        steps = journal.setdefault("rollback_steps", {})
        swap = steps.get("swap")
        if swap and swap.get("state") != "done" and server.exists(swap["failed_as"]) \
                and not server.exists(swap["point"]):
            # ALTER DATABASE ... RENAME twice in one transaction: both happened.
            swap["state"] = "done"
            self.journal.write()
        swapped = bool(swap) and swap.get("state") == "done"
        if written and not swapped and point and server.exists(point):
            # Once users were served on the live database (a start by hand after an interrupted
            # run, say), nothing is restored over what they did: ELLA's own log says so.
            served = served_since(server, point, journal)
            if served["served"]:
                journal["served_after_window"] = served
                self.journal.write()
                raise WindowError(
                    "nothing was restored: the live database served users after the window (%s); the new "
                    "version's data are theirs now. `ella-deploy recover` keeps it" % describe_served(served))
        if written and not swapped and (not point or not server.exists(point)):
            # Nothing is put back: the symlink, the configuration and the data stay together,
            # as the new version left them, and ELLA stays stopped.
            journal["phase"] = "rollback_failed"
            self.journal.write()
            raise WindowError("the rollback point %s is missing, and the database may have been written to (steps "
                              "%s): nothing was put back, ELLA stays stopped with the new version's image and data"
                              % (point or "(none made)", ", ".join(written)))
        link, previous = journal["link"], journal.get("previous_target")
        if previous and os.path.islink(link) and os.readlink(link) != previous:
            switch_symlink(link, previous)
            done["symlink"] = previous
        config = journal.get("config")
        if config and journal.get("config_switched") and os.path.exists(config["previous"]):
            os.rename(config["previous"], config["live"])
            done["config"] = "the previous configuration is live again"
        if written:
            if not swapped:
                swap = steps["swap"] = {"point": point, "failed_as": "%s_failed_%s" % (server.database, stamp()),
                                        "state": "started"}
                self.journal.write()
                server.swap(point, swap["failed_as"])
                swap["state"] = "done"
                self.journal.write()
            # (A rerun finds the failed database still there when the drop did not happen.)
            if server.exists(swap["failed_as"]):
                server.drop(swap["failed_as"])
            steps["drop_failed"] = "done"
            done["database"] = "restored: the rollback point %s is the live database again" % swap["point"]
        else:
            if point and server.exists(point):
                server.drop(point)
            done["database"] = "unchanged (no step wrote to it)"
        if "fixtures" in written and journal.get("fixtures_record"):
            before = journal.get("fixtures_record_before")
            if before is None:
                if os.path.exists(journal["fixtures_record"]):
                    os.unlink(journal["fixtures_record"])
            else:
                write_atomic(journal["fixtures_record"], before)
        journal["phase"] = "rolled_back"
        journal["rollback"] = done
        self.journal.write()
        return done

    # ---- start and health gate ------------------------------------------------------------
    def start(self):
        health = self.params["health"]
        self.journal.lock(30)
        journal = self.journal.read()
        self.supervisor = self.supervisor or Supervisor(journal["supervisor_config"])
        going_live = bool(journal) and self.params["go_live"]
        if going_live and self.journal.cancelled():
            # The operator interrupted the run before the new version was started.
            journal["phase"] = "cancelled"
            journal["cancelled_before"] = "start"
            self.journal.write()
            raise WindowError("cancelled by the operator before step start")
        if going_live:
            journal["phase"] = "starting"
            self.journal.begin("start")
        started = time.monotonic()
        try:
            if (self.params["lock"] or {}).get("token"):
                # The lock's holder starts ELLA here (its guard passed; the heartbeat proved the
                # lock is ours): ELLA's program command lets this start, and supervisord's own
                # restarts of it, go on until the lock is released or ELLA stopped here.
                write_atomic(self.permit(), "%s\n" % time.time())
            # The shared supervisor.cfg may have changed since this host's supervisord read
            # it: apply it first (ELLA is stopped here), so the start runs what it says.
            self.supervisor.reread_update()
            self.supervisor.start(self.params["program"])
            waited = self.health_gate(health, cancellable=going_live)
        except Exception as error:  # noqa: BLE001
            if going_live:
                self.journal.end("start", state="failed", error=str(error)[:500])
            raise WindowError(str(error)) from None
        result = {"seconds": round(time.monotonic() - started, 2), "health_seconds": waited}
        if going_live:
            self.journal.end("start", **result)
            journal["phase"] = "live"
            journal["live_since"] = time.time()
            self.journal.write()
        elif journal and journal.get("phase") == "rolled_back":
            journal["phase"] = "rolled_back_running"
            self.journal.write()
        return result

    def health(self):
        return {"health_seconds": self.health_gate(self.params["health"])}

    def health_gate(self, health, cancellable=False):
        """Until ELLA serves from the expected image; `cancellable`: a cancel request before
        it serves stops ELLA again (it served no one) and fails."""
        started = time.monotonic()
        deadline = started + float(health.get("timeout", 120))
        expected = os.path.realpath(health["expected_image"])
        inner = health.get("inner_supervisor_config")
        last = "nothing checked yet"
        while True:
            servers = [p for p in ella_processes() if p["role"] == "server"]
            daemon, program = self.supervisor.state(self.params["program"])
            if program["state"] in ("FATAL", "EXITED", "STOPPED", "BACKOFF"):
                raise WindowError("supervisord reports ELLA %s (exit status %s); see ella-prod/logs"
                                  % (program["state"], program.get("exitstatus")))
            if not servers:
                last = "no ELLA process on this host"
            elif not any(p["image"] and os.path.realpath(p["image"]) == expected for p in servers):
                last = "ELLA runs %s, expected %s" % (servers[0]["image"] or "an unknown image", expected)
            else:
                states = inner_programs(inner, health.get("socket_dir"))[0] if inner else {}
                not_running = sorted(name for name, state in states.items() if state != "RUNNING")
                if inner and (not states or not_running):
                    last = ("ELLA's own supervisord: " + ", ".join("%s %s" % (n, states[n]) for n in not_running)
                            if states else "ELLA's own supervisord does not answer yet")
                else:
                    status, body = http_get(health["url"])
                    if status == 200 and isinstance(body, dict) and "app" in body:
                        return round(time.monotonic() - started, 2)
                    last = "%s answered %s" % (health["url"], status)
            if cancellable and self.journal.cancelled():
                self.stop_ella()
                raise WindowError("cancelled by the operator before ELLA served (%s); ELLA stopped again" % last)
            if time.monotonic() > deadline:
                raise WindowError("health gate: not serving within %ss: %s" % (health.get("timeout", 120), last))
            time.sleep(float(health.get("interval", 0.25)))

    # ---- finish ---------------------------------------------------------------------------
    def finish(self):
        self.journal.lock(30)
        journal = self.journal.read()
        if journal:
            journal["phase"] = "done"
            journal["outcome"] = self.params["outcome"]
            journal["finished"] = time.time()
            self.journal.write()


def describe_served(served):
    """One line on what ELLA served since the window, from its own tables."""
    parts = ["%d request(s) of %d user session(s) or writes, %d of them writes" % (
        served["requests"], served["users"], served["writes"])]
    if served["cli_changes"]:
        parts.append("%d ella-cli change(s)" % served["cli_changes"])
    if served.get("first"):
        parts.append("from %s to %s" % (served["first"], served["last"]))
    return ", ".join(parts)


def served_state(journal):
    """For `state` with C(served): what the live database served since the open release's
    window (None when nothing can have been replaced: no rollback point, or no release open)."""
    point = (journal.get("rollback_point") or {}).get("database")
    if not point or journal.get("phase") in ("done", None) or not journal.get("db_url"):
        return None
    server = Server(journal["db_url"], journal["pgpassfile"])
    if not server.exists(point) or not server.exists(server.database):
        return None
    served = served_since(server, point, journal)
    served["summary"] = describe_served(served)
    return served


def served_since(server, point, journal):
    """What the live database served after this journal's window (ella_pg's rule): after the
    logs' marks the window recorded at its end, else after the rollback point less the
    window's own ella-cli commands."""
    own = [" ".join(MIGRATE)] + [" ".join(f["command"]) for f in journal.get("fixtures") or []]
    return server.served_since(point, journal.get("log_marks"), own)


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, None
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError) as error:
        return "nothing (%s)" % error.__class__.__name__, None


def read_file(path):
    with open(path) as handle:
        return handle.read()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True,
                        choices=["forward", "rollback", "start", "stop", "health", "finish", "state"]),
            journal_dir=dict(type="path", required=True),
            release=dict(type="dict"),
            supervisor_config=dict(type="path"),
            program=dict(type="str", default="ella"),
            singularity_args=dict(type="list", elements="str", default=[]),
            environment=dict(type="dict", default={}),
            db_url=dict(type="str"),
            pgpassfile=dict(type="path"),
            reason=dict(type="str", default="ella-deploy release"),
            health=dict(type="dict", default={}),
            go_live=dict(type="bool", default=False),
            outcome=dict(type="str"),
            wait_seconds=dict(type="float", default=900),
            wait_idle=dict(type="bool", default=False),
            cancel=dict(type="bool", default=False),
            served=dict(type="bool", default=False),
            lock=dict(type="dict", options=dict(path=dict(type="path"), token=dict(type="str", no_log=True))),
            journal_id=dict(type="str"),
        ),
        required_if=[("action", "forward", ["release", "supervisor_config", "db_url", "pgpassfile"]),
                     ("action", "start", ["health", "supervisor_config"]),
                     ("action", "health", ["health", "supervisor_config"]), ("action", "finish", ["outcome"]),
                     ("action", "stop", ["supervisor_config"])],
        supports_check_mode=False,
    )
    # A lost SSH connection must not stop the window between two steps.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    window = Window(module)
    action = module.params["action"]
    try:
        if action == "state":
            if module.params["wait_idle"] and module.params["cancel"]:
                # The operator interrupted the run: its step on the host stops at its next boundary.
                window.journal.lock_cancelling(module.params["wait_seconds"])
            elif module.params["wait_idle"]:
                # A step of an interrupted run goes on (SIGHUP is ignored): read what it leaves.
                window.journal.lock(module.params["wait_seconds"])
            journal = window.journal.read()
            served = served_state(journal) if module.params["served"] else None
            module.exit_json(changed=False, journal=journal, served=served)
        lock = module.params["lock"] or {}
        with Heartbeat(lock.get("path"), lock.get("token")) as heartbeat:
            window.heartbeat = heartbeat
            result = {"forward": window.forward, "rollback": window.rollback, "start": window.start,
                      "stop": window.stop_ella, "health": window.health, "finish": window.finish}[action]()
        # health only reads; every other action changes the host.
        module.exit_json(changed=action != "health", result=result or {}, journal=window.journal.data)
    except (WindowError, PgError, LockError, RuntimeError, OSError) as error:
        module.fail_json(msg=str(error), journal=window.journal.data)


if __name__ == "__main__":
    main()
