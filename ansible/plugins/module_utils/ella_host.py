"""What ELLA is on one host, and how ella-deploy acts on it there: the supervisord that runs
it, the processes of every ELLA however started, the live symlink, and `ella-cli` inside the
image. Shared by the ella_host_facts and ella_release_window modules.

How a real ELLA looks in the process table (ELLA's Dockerfile and ops/prod, run by
Singularity): the process supervisord (or a person) started shows as "Singularity runtime
parent" (Apptainer: "Apptainer runtime parent") and holds the image file open; below it
ELLA's entrypoint execs its own supervisord, which runs nginx, gunicorn (`api.main:app`),
`src/api/polling.py` and the analysis watcher. `ella-cli` inside the image is
`python .../src/cli/main.py`. None of these names the image on its command line.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import time
import xmlrpc.client

RELEASE_NAME = re.compile(r"ella-release-v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)\.sif$")
RUNTIME_PARENTS = ("Singularity runtime parent", "Apptainer runtime parent")
# Command-line marks of ELLA's own server processes inside the image.
SERVER_MARKS = (re.compile(r"\bapi\.main:app\b"), re.compile(r"(^|[\s/])src/api/polling\.py\b"),
                re.compile(r"analysis_watcher\.py\b"), re.compile(r"/ella/ops/prod/entrypoint\.sh\b"))
CLI_MARK = re.compile(r"(^|/)src/cli/main\.py\b|(^|/)ella-cli(\s|$)")


def version_of(path):
    match = RELEASE_NAME.search(path or "")
    return match.group(1) if match else None


# ---- supervisord ---------------------------------------------------------------------------

class Supervisor:
    """A supervisord reached over the unix socket its config names (XML-RPC, not text)."""

    def __init__(self, config_path):
        self.config_path = config_path
        parser = configparser.RawConfigParser()
        parser.read(config_path)
        self.serverurl = parser.get("supervisorctl", "serverurl", fallback=None)
        self.username = parser.get("supervisorctl", "username", fallback=None)
        self.password = parser.get("supervisorctl", "password", fallback=None)

    def proxy(self):
        if not os.path.exists(self.config_path):
            raise OSError("no %s" % self.config_path)
        if not self.serverurl or not self.serverurl.startswith("unix://"):
            raise OSError("%s has no unix serverurl" % self.config_path)
        from supervisor.xmlrpc import SupervisorTransport

        return xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(self.username, self.password, self.serverurl))

    def state(self, program):
        """(supervisord: running/pid/error, program: name/state/pid/uptime/exitstatus)."""
        daemon = {"running": False, "pid": None, "error": None}
        info = {"name": program, "state": "UNKNOWN", "pid": None, "uptime_seconds": None}
        try:
            proxy = self.proxy()
            daemon["pid"] = proxy.supervisor.getPID()
            daemon["running"] = True
        except ImportError:
            daemon["error"] = "python3 supervisor package missing"
            return daemon, info
        except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError) as error:
            daemon["error"] = "supervisord not running (%s)" % (error.__class__.__name__,)
            return daemon, info
        try:
            found = proxy.supervisor.getProcessInfo(program)
        except xmlrpc.client.Fault as error:
            info.update(state="ABSENT", error=error.faultString)
            return daemon, info
        info.update(state=found["statename"], pid=found["pid"] or None, exitstatus=found.get("exitstatus"))
        if found["statename"] == "RUNNING" and found["start"]:
            info["uptime_seconds"] = max(0, found["now"] - found["start"])
        return daemon, info

    def programs(self):
        """name -> state of every program (ELLA's own supervisord inside the image)."""
        return {p["name"]: p["statename"] for p in self.proxy().supervisor.getAllProcessInfo()}

    def start(self, program):
        """Start and wait until supervisord calls it RUNNING (or fails: raises)."""
        try:
            self.proxy().supervisor.startProcess(program, True)
        except xmlrpc.client.Fault as error:
            if "ALREADY_STARTED" not in error.faultString:
                raise RuntimeError("supervisord could not start %s: %s" % (program, error.faultString)) from None

    def stop(self, program):
        try:
            proxy = self.proxy()
            proxy.supervisor.getPID()
        except OSError:
            return  # no supervisord here: nothing supervised runs (end_ella sees to the rest)
        try:
            proxy.supervisor.stopProcess(program, True)
        except xmlrpc.client.Fault as error:
            if "NOT_RUNNING" not in error.faultString:
                raise RuntimeError("supervisord could not stop %s: %s" % (program, error.faultString)) from None

    def reread_update(self):
        """Load a changed config: what `supervisorctl update` does, for the changed groups."""
        proxy = self.proxy()
        added, changed, removed = proxy.supervisor.reloadConfig()[0]
        for group in removed + changed:
            proxy.supervisor.stopProcessGroup(group, True)
            proxy.supervisor.removeProcessGroup(group)
        for group in added + changed:
            proxy.supervisor.addProcessGroup(group)
        return {"added": added, "changed": changed, "removed": removed}


def inner_supervisor(config_path, socket_dir):
    """ELLA's own supervisord inside the image: its config (written by ELLA's entrypoint to
    /socket) names its socket as the image sees it, /socket/supervisor.sock."""
    supervisor = Supervisor(config_path)
    if supervisor.serverurl and socket_dir:
        supervisor.serverurl = supervisor.serverurl.replace("unix:///socket/", "unix://%s/" % socket_dir.rstrip("/"))
    return supervisor


def inner_programs(config_path, socket_dir):
    """program -> state of ELLA's own supervisord, and why it is not known (None when known)."""
    try:
        return inner_supervisor(config_path, socket_dir).programs(), None
    except Exception as error:  # noqa: BLE001 - not answering is a state, not an error
        return {}, "%s: %s" % (error.__class__.__name__, str(error)[:200])


# ---- processes -----------------------------------------------------------------------------

def _read(pid, name):
    with open("/proc/%s/%s" % (pid, name), "rb") as handle:
        return handle.read()


def _boot_time():
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def process_table():
    """pid -> {ppid, argv, started (epoch), uid} for every process that can be read."""
    ticks = os.sysconf("SC_CLK_TCK")
    booted = _boot_time()
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = [a.decode("utf-8", "replace") for a in _read(entry, "cmdline").split(b"\0") if a]
            stat = _read(entry, "stat").decode()
            uid = os.stat("/proc/" + entry).st_uid
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = {"ppid": int(fields[1]), "argv": argv, "uid": uid,
                             "started": booted + int(fields[19]) / ticks}
    return table


def _open_images(pid):
    """The .sif files a process holds open (readable for the same user or root)."""
    images = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.endswith(".sif"):
                images.append(target)
    except OSError:
        pass
    return images


def _kind(argv):
    line = " ".join(argv)
    if any(line.startswith(title) for title in RUNTIME_PARENTS):
        return "runtime"
    if CLI_MARK.search(line):
        return "cli"
    if any(mark.search(line) for mark in SERVER_MARKS):
        return "server"
    return None


def ella_processes(supervisord_pid=None, table=None):
    """Every ELLA on this host, server or ella-cli, each counted once at the top of its tree
    (the runtime parent when Singularity runs it, else the outermost ELLA process)."""
    table = table if table is not None else process_table()
    children = {}
    for pid, info in table.items():
        children.setdefault(info["ppid"], []).append(pid)
    kinds = {pid: _kind(info["argv"]) for pid, info in table.items()}

    def descendants(pid):
        found, stack = [], list(children.get(pid, []))
        while stack:
            current = stack.pop()
            found.append(current)
            stack.extend(children.get(current, []))
        return found

    def ancestors(pid):
        seen, walker = [], table[pid]["ppid"]
        while walker in table and walker not in seen and walker > 1:
            seen.append(walker)
            walker = table[walker]["ppid"]
        return seen

    now = time.time()
    found = []
    for pid in sorted(table):
        kind = kinds[pid]
        if kind is None or any(kinds.get(a) for a in ancestors(pid)):
            continue
        tree = [pid] + descendants(pid)
        tree_kinds = {kinds[p] for p in tree if kinds.get(p) and p != pid} | ({kind} - {"runtime"})
        if kind == "runtime" and not tree_kinds:
            images = _open_images(pid)
            # A container of some other image, or one still starting: ELLA only by its image.
            if not any(version_of(os.path.basename(i)) for i in images):
                continue
        role = "server" if "server" in tree_kinds or (kind == "runtime" and "cli" not in tree_kinds) else "cli"
        images = []
        for member in tree:
            images += _open_images(member)
        image = images[0] if images else None
        found.append({
            "pid": pid,
            "role": role,
            "image": image,
            "version": version_of(image),
            "singularity": kind == "runtime",
            "supervised": bool(supervisord_pid) and supervisord_pid in ancestors(pid),
            "uptime_seconds": int(now - table[pid]["started"]),
            "uid": table[pid]["uid"],
            "cmdline": " ".join(table[pid]["argv"])[:300],
        })
    return found


def end_ella(grace=5.0, timeout=15.0):
    """Make sure no ELLA server runs on this host any more: whatever is left once its
    supervisord stopped it (a hung gunicorn worker outlives its master, an ELLA started by
    hand) gets SIGTERM with its whole process tree, after `grace` seconds, then SIGKILL.
    Returns what was ended; raises when something could not be (another user's process)."""
    import signal

    deadline = time.monotonic() + grace
    ended = []
    signal_sent = None
    while True:
        table = process_table()
        left = [p for p in ella_processes(table=table) if p["role"] == "server"]
        if not left:
            return ended
        now = time.monotonic()
        if now < deadline:
            time.sleep(0.1)
            continue
        kind = signal.SIGKILL if signal_sent is not None and now > signal_sent + timeout else signal.SIGTERM
        if kind == signal.SIGTERM and signal_sent is not None:
            time.sleep(0.2)
            continue
        children = {}
        for pid, info in table.items():
            children.setdefault(info["ppid"], []).append(pid)
        for process in left:
            tree, stack = [], [process["pid"]]
            while stack:
                current = stack.pop()
                tree.append(current)
                stack.extend(children.get(current, []))
            for pid in tree:
                try:
                    os.kill(pid, kind)
                except ProcessLookupError:
                    pass
                except PermissionError:
                    raise RuntimeError("ELLA process %d (%s) on this host belongs to another user: it cannot be "
                                       "stopped from here" % (pid, " ".join(table[pid]["argv"])[:80])) from None
            ended.append({"pid": process["pid"], "cmdline": process["cmdline"][:120], "signal": int(kind)})
        if kind == signal.SIGKILL:
            time.sleep(0.5)
            if [p for p in ella_processes() if p["role"] == "server"]:
                raise RuntimeError("ELLA processes are still there after SIGKILL")
            return ended
        signal_sent = time.monotonic()


def symlink_state(image_link):
    state = {"path": image_link, "target": None, "resolved": None, "version": None, "exists": False}
    if os.path.islink(image_link):
        state["target"] = os.readlink(image_link)
        state["resolved"] = os.path.realpath(image_link)
        state["exists"] = os.path.exists(state["resolved"])
        state["version"] = version_of(state["resolved"])
    return state


def switch_symlink(link, target):
    """Point `link` at `target` by rename(2) of a new link over it: never a moment without one."""
    temporary = "%s.ella-deploy-%d" % (link, os.getpid())
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.rename(temporary, link)


# ---- ella-cli inside the image -------------------------------------------------------------

def ella_cli(image, args, singularity_args, environment, stdin=None, timeout=None):
    """`singularity exec [binds] IMAGE ella-cli ARGS` with ELLA's environment: the one way
    ella-deploy runs ella-cli on a host."""
    env = dict(os.environ)
    env.update({key: str(value) for key, value in (environment or {}).items()})
    argv = ["singularity", "exec"] + list(singularity_args or []) + [image, "ella-cli"] + list(args)
    return subprocess.run(argv, env=env, input=stdin if stdin is not None else "", capture_output=True,
                          text=True, timeout=timeout)


COMPARE_DB = re.compile(r"^Database HEAD: (\S+)\s*$", re.M)
COMPARE_SCRIPT = re.compile(r"^Migration script HEAD: (\S+)\s*$", re.M)


def compare(image, singularity_args, environment):
    """What `ella-cli database compare` says: the database's revision and the image's head.
    It exits 1 on a mismatch and on any crash alike, so its two lines decide, not its code."""
    done = ella_cli(image, ["database", "compare"], singularity_args, environment, timeout=300)
    database, script = COMPARE_DB.search(done.stdout), COMPARE_SCRIPT.search(done.stdout)
    if done.returncode not in (0, 1) or not database or not script:
        raise RuntimeError("ella-cli database compare failed (exit %d): %s"
                           % (done.returncode, last_line(done.stderr or done.stdout)))
    revision = None if database.group(1) == "None" else database.group(1)
    return {"revision": revision, "head": script.group(1), "pending": revision != script.group(1)}


def last_line(text):
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


BROADCAST_ADDED = re.compile(r"^Message with id (\d+) added\s*$", re.M)
BROADCAST_INACTIVE = re.compile(r"^Message with id (\d+) set as inactive\s*$", re.M)
# A row of `ella-cli broadcast list` (ELLA's row_format " {id:^5} | {date:^33} | {active:<10} | {message:<80} |").
BROADCAST_ROW = re.compile(r"^\s*(\d+)\s*\|\s*(\S+)\s*\|\s*(true|false)\s*\|\s(.*?)\s*\|\s*$")


# alembic's line for each migration it starts (ELLA's logging sends it to stderr).
UPGRADE_LINE = re.compile(r"Running upgrade (\S+ -> [^\s,]+.*?)\s*$", re.M)


def upgrade_report(done):
    """What `ella-cli database upgrade head` did, read from alembic's "Running upgrade A -> B,
    doc" lines: the migrations it started, in order, and when it failed, one line naming the
    migration it failed in (the last one started) and the error's last line; else error None."""
    started = UPGRADE_LINE.findall((done.stdout or "") + "\n" + (done.stderr or ""))
    if done.returncode == 0:
        return {"applied": started, "error": None}
    where = ("in the migration %s" % started[-1].split(",")[0]) if started else "before any migration started"
    return {"applied": started, "error": "ella-cli database upgrade head exited %d %s: %s"
            % (done.returncode, where, last_line(done.stderr or done.stdout))}


def interpret(kind, done):
    """What an ella-cli command's output means, for the commands whose output ella-deploy
    relies on. ELLA prints its messages on stdout and exits 0 even when it did nothing
    ("Found no message with id 7", "Message empty"), so the message decides."""
    if kind == "broadcast_new":
        match = BROADCAST_ADDED.search(done.stdout)
        if done.returncode != 0 or not match:
            raise RuntimeError("ella-cli broadcast new did not add a message: %s" % last_line(done.stdout or done.stderr))
        return {"broadcast_id": int(match.group(1))}
    if kind == "broadcast_deactivate":
        match = BROADCAST_INACTIVE.search(done.stdout)
        if done.returncode != 0 or not match:
            raise RuntimeError("ella-cli broadcast deactivate changed nothing: %s"
                               % last_line(done.stdout or done.stderr))
        return {"broadcast_id": int(match.group(1))}
    if kind == "broadcast_list":
        if done.returncode != 0:
            raise RuntimeError("ella-cli broadcast list failed: %s" % last_line(done.stderr or done.stdout))
        rows = [BROADCAST_ROW.match(line) for line in done.stdout.splitlines()]
        return {"broadcasts": [{"id": int(m.group(1)), "date": m.group(2), "active": m.group(3) == "true",
                                "message": m.group(4)} for m in rows if m]}
    if kind == "migration":
        return upgrade_report(done)
    return {}
