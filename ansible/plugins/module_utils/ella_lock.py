"""The deploy lock of an ELLA environment, on its shared storage: who holds it, whether that
holder is still there, and how long-running steps keep it.

A lock is a directory made with mkdir(2) (atomic, also on NFS) holding holder.json: who took
it, from which controller and process, and a token only its holder knows. The holder proves
it is alive by a heartbeat (the mtime of `heartbeat` in the lock directory), renewed by every
step of its run; a lock whose heartbeat is older than its lease, or whose controller process
is gone (judged on that same controller), has no holder any more and may be broken. A break
is a compare-and-swap: the directory is renamed aside, then the holder it held is compared
with the one judged gone; a lock renewed in between is put back.

Ages are measured by the shared storage's clock (the mtime a touch there gets), not by the
host's own: hosts whose clocks disagree still agree on how old a heartbeat is. A long step on
a host that renews the lock registers itself in `renewers/` while it runs, so that once its
controller has ended and no step renews any more, the holder is known gone at once. The
token is in holder.json, readable by the service user only (0600).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import threading
import time

from ansible.module_utils.ella_atomic import write_atomic

HOLDER = "holder.json"
HEARTBEAT = "heartbeat"
RENEWERS = "renewers"
# Touched beside the lock to read the shared storage's clock.
CLOCK = ".clock"


class LockError(Exception):
    """The lock could not be taken, kept or released; the message names the holder."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_holder(path):
    try:
        with open(os.path.join(path, HOLDER)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        # mkdir happened, holder.json not yet (or unreadable): still held.
        return {"operator": "unknown", "note": "lock directory without readable holder.json"}


def public(holder):
    """The holder as others may see it: never the token."""
    return {key: value for key, value in (holder or {}).items() if key != "token"}


def describe(holder):
    return "%s on %s since %s (%s)" % (holder.get("operator", "?"), holder.get("controller", "?"),
                                       holder.get("since", "?"), holder.get("command", "?"))


def storage_now(directory):
    """The shared storage's own time: the mtime it gives a file touched there now (an NFS
    server sets it by its clock). The host's clock only when the storage cannot be written."""
    clock = os.path.join(directory, CLOCK)
    try:
        touch(clock)
        return os.stat(clock).st_mtime
    except OSError:
        return time.time()


def heartbeat_age(path, now=None):
    """Seconds since the lock's last heartbeat, by the storage's clock (None: no lock)."""
    if now is None and not os.path.isdir(path):
        return None
    now = storage_now(os.path.dirname(path.rstrip("/")) or ".") if now is None else now
    try:
        return now - os.stat(os.path.join(path, HEARTBEAT)).st_mtime
    except OSError:
        try:
            return now - os.stat(path).st_mtime
        except OSError:
            return None


def renewers(path):
    """How many steps on hosts say they renew the lock right now (a crashed host's stays)."""
    try:
        return len(os.listdir(os.path.join(path, RENEWERS)))
    except OSError:
        return 0


# Seconds without a heartbeat after which no process on a host acts under the lock any more
# (the long-running modules renew it every HEARTBEAT_INTERVAL seconds).
HEARTBEAT_INTERVAL = 10.0
HOST_QUIET = 3 * HEARTBEAT_INTERVAL
# Once no step says it renews the lock: the seconds a short step (which does not renew) may
# still take to end after its controller died.
SETTLE = HEARTBEAT_INTERVAL / 2


def holder_gone(holder, age, controller_gone=None, renewing=None):
    """Why the holder of a lock is gone, or None while it may still be there.

    The heartbeat decides: a lock not renewed within its lease has no holder. The caller's
    controller may know sooner (controller_gone: it took the lock from this very machine and
    that process has ended); that counts once nothing on a host renews the lock either: no
    step says it renews (`renewing` == 0), or none has for HOST_QUIET seconds (a host that
    crashed in a step leaves its word behind; a short step that does not renew has had SETTLE
    seconds to end)."""
    lease = float(holder.get("lease_seconds") or 0)
    if age is None:
        return None
    if lease > 0 and age > lease:
        return "no heartbeat for %ds (lease %ds)" % (age, lease)
    if controller_gone and age > HOST_QUIET:
        return "%s, and nothing renewed the lock for %ds" % (controller_gone, age)
    if controller_gone and renewing == 0 and age > SETTLE:
        return "%s, and no step on a host renews the lock (last heartbeat %ds ago)" % (controller_gone, age)
    return None


def write_json(path, data):
    # The holder carries the token: the service user's alone.
    write_atomic(path, json.dumps(data, sort_keys=True), mode=0o600)


def touch(path):
    with open(path, "a"):
        pass
    os.utime(path, None)


def take(path, holder, token, lease_seconds, break_reason="", controller_gone=None):
    """Take the lock; with break_reason, first break a lock whose holder is gone (only such a
    lock). Returns (holder record, broken holder or None)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    broken = None
    if os.path.isdir(path) and read_holder(path).get("token") == token:
        # The holder itself, after its run was interrupted (ella-deploy recover from the same
        # invocation): it takes its own lock over.
        record = dict(read_holder(path))
        record.update(holder, token=token, lease_seconds=lease_seconds, host_pid=os.getpid(), resumed=utc_now())
        write_json(os.path.join(path, HOLDER), record)
        touch(os.path.join(path, HEARTBEAT))
        return public(record), None
    if os.path.isdir(path) and break_reason:
        broken = break_lock(path, break_reason, controller_gone)
    try:
        os.mkdir(path, 0o750)
    except FileExistsError:
        current = read_holder(path)
        raise LockError("deploy lock held by %s; if that run is gone, `ella-deploy recover` (or --break-lock "
                        "REASON) breaks it" % describe(current), public(current)) from None
    record = dict(holder)
    record.update(token=token, since=utc_now(), lease_seconds=lease_seconds, host_pid=os.getpid())
    write_json(os.path.join(path, HOLDER), record)
    touch(os.path.join(path, HEARTBEAT))
    return public(record), broken


def break_lock(path, reason, controller_gone=None):
    """Compare-and-swap: move the lock aside, then make sure it is the lock judged gone."""
    judged = read_holder(path)
    gone = holder_gone(judged, heartbeat_age(path), controller_gone, renewers(path))
    if gone is None:
        raise LockError("deploy lock held by %s, and its holder is still there (heartbeat %ds ago): not broken"
                        % (describe(judged), heartbeat_age(path) or 0), public(judged))
    aside = "%s.broken-%s-%s" % (path, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), secrets.token_hex(4))
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        raise LockError("deploy lock was released or broken by someone else meanwhile: try again") from None
    moved = read_holder(aside)
    age = heartbeat_age(aside)
    if moved.get("token") != judged.get("token") or holder_gone(moved, age, controller_gone, renewers(aside)) is None:
        # Renewed or replaced between the judgement and the rename: it is not ours to break.
        try:
            os.rename(aside, path)
        except OSError:
            pass
        raise LockError("deploy lock changed hands while it was being broken: not broken", public(moved))
    broken = public(moved)
    broken.update(break_reason=reason, gone=gone, broken_at=utc_now(), kept_as=os.path.basename(aside))
    return broken


def renew(path, token):
    """The holder's heartbeat; fails when the lock is no longer held with this token."""
    if not os.path.isdir(path):
        raise LockError("the deploy lock is no longer held (broken or released): stopping")
    holder = read_holder(path)
    if holder.get("token") != token:
        raise LockError("the deploy lock is held by someone else now: %s" % describe(holder), public(holder))
    touch(os.path.join(path, HEARTBEAT))


def release(path, token):
    import shutil

    if not os.path.isdir(path):
        return False
    holder = read_holder(path)
    if holder.get("token") != token:
        raise LockError("deploy lock is held by someone else: " + describe(holder), public(holder))
    shutil.rmtree(path)
    return True


class Heartbeat:
    """Renews the lock every `interval` seconds while a long step runs on the host. When the
    lock is lost, `lost` says why and the step stops at its next boundary."""

    def __init__(self, path, token, interval=HEARTBEAT_INTERVAL):
        self.path, self.token, self.interval = path, token, interval
        self.lost = None
        self._stop = threading.Event()
        self._thread = None
        self._word = None

    def __enter__(self):
        if self.path and self.token:
            renew(self.path, self.token)
            # Said while this step runs: a holder whose controller ended is not gone meanwhile.
            self._word = os.path.join(self.path, RENEWERS, "%s-%d-%s" % (os.uname()[1], os.getpid(),
                                                                          secrets.token_hex(4)))
            try:
                os.makedirs(os.path.dirname(self._word), mode=0o750, exist_ok=True)
                touch(self._word)
            except OSError:
                self._word = None
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                renew(self.path, self.token)
            except (LockError, OSError) as error:
                self.lost = str(error)
                return

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self._word:
            try:
                os.unlink(self._word)
            except OSError:
                pass
        return False
