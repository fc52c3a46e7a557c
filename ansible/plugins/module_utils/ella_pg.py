"""ELLA's database as ella-deploy handles it on a host: dumps with a row-count manifest,
server-side copies, restores that are all or nothing, and the swap of two databases.

Why this shape: a restore must never leave the live database half loaded. So a backup is
first restored into a scratch database, checked against the row counts its manifest
recorded when it was taken, and only then put in place by renaming databases in one
transaction (ALTER DATABASE ... RENAME is transactional): either the live database is the
complete backup, or it is exactly what it was before.

Connections go through libpq with PGPASSFILE (psycopg2 for queries, the PostgreSQL client
programs for dumps): no password is ever in an argument, an environment variable or a
result. psycopg2 is what community.postgresql needs on the hosts already.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

from ansible.module_utils.ella_atomic import write_atomic

# Database names ella-deploy makes: <live>_<purpose>_<UTC stamp>, plain identifiers only.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
URL = re.compile(r"^(?P<base>postgres(?:ql)?://[^/?#]+)/(?P<database>[^/?#]+)$")
MANIFEST_SUFFIX = ".manifest.json"

# Exact row counts of every table of the public schema, as one JSON object.
COUNT_ROWS = """
SELECT coalesce(json_object_agg(table_name, (xpath('/row/c/text()', query_to_xml(
    format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text::bigint
    ORDER BY table_name), '{}')
FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
"""


# ELLA's own logs in its database: every API request (resourcelog) and ella-cli command (clilog).
LOG_TABLES = ("resourcelog", "clilog")


# A session of a login, not one of the server's own workers (autovacuum runs as no login).
# (Not backend_type: a login without pg_read_all_stats sees it NULL on other logins' rows.)
LOGIN_SESSION = "usesysid IS NOT NULL"


class PgError(Exception):
    """A database operation that did not happen; the message says why in one line."""


def describe_sessions(rows):
    """login@address (application), the first five."""
    return ", ".join("%s@%s (%s)" % (row[3], row[1], row[2] or "?") for row in rows[:5])


def stamp():
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()).lower()


def check_identifier(name):
    if not IDENTIFIER.match(name or ""):
        raise PgError("not a plain database name: %r" % (name,))
    return name


def quote_ident(name):
    return '"%s"' % check_identifier(name)


def count_differences(expected, actual):
    """table -> [expected, actual] for every table whose row count differs or is missing."""
    tables = sorted(set(expected) | set(actual))
    return {t: [expected.get(t), actual.get(t)] for t in tables if expected.get(t) != actual.get(t)}


class Server:
    """One PostgreSQL server as ELLA's login sees it (url: postgresql://user@host:port/db)."""

    def __init__(self, url, pgpassfile, maintenance_database="postgres"):
        match = URL.match(url or "")
        if not match:
            raise PgError("not a libpq URL with a database: %r" % (url,))
        self.base = match.group("base")
        netloc = self.base.split("//", 1)[1]
        if "@" in netloc and ":" in netloc.rsplit("@", 1)[0]:
            raise PgError("the database URL must not hold a password (it comes from the password file)")
        self.database = check_identifier(match.group("database"))
        self.maintenance_database = maintenance_database
        self.env = dict(os.environ, PGPASSFILE=pgpassfile, PGCONNECT_TIMEOUT="10")

    def url(self, database=None):
        return "%s/%s" % (self.base, database or self.database)

    # ---- queries ---------------------------------------------------------------------
    def connect(self, database=None, autocommit=True):
        try:
            import psycopg2
        except ImportError:
            raise PgError("python3-psycopg2 is not installed on this host") from None
        os.environ["PGPASSFILE"] = self.env["PGPASSFILE"]
        try:
            connection = psycopg2.connect(self.url(database), connect_timeout=10,
                                          application_name="ella-deploy")
        except psycopg2.Error as error:
            raise PgError("cannot connect to %s: %s" % (database or self.database, _first_line(error))) from None
        connection.autocommit = autocommit
        return connection

    def query(self, sql, params=None, database=None):
        """Rows of one statement, run in autocommit mode."""
        import psycopg2

        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        except psycopg2.Error as error:
            raise PgError(_first_line(error)) from None
        finally:
            connection.close()

    def maintenance(self, sql, params=None):
        """A statement about databases (CREATE/DROP/ALTER DATABASE), run from the maintenance database."""
        return self.query(sql, params, database=self.maintenance_database)

    def exists(self, database):
        return bool(self.maintenance("SELECT 1 FROM pg_database WHERE datname = %s", (database,)))

    def sessions(self, database):
        """Other sessions connected to `database` (ELLA, psql, anyone):
        (pid, address, application, login, seconds since the session began). Sessions of a
        login only: the server's own autovacuum worker (which starts on a freshly restored
        copy) has none, and CREATE DATABASE ends it on its template itself."""
        return self.maintenance(
            "SELECT pid, coalesce(host(client_addr), 'local'), application_name, usename, "
            "round(extract(epoch FROM now() - backend_start))::int FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND " + LOGIN_SESSION, (database,))

    def login(self):
        """The login this server object connects as."""
        return self.maintenance("SELECT current_user")[0][0]

    def end_own_sessions(self, database, wait_seconds):
        """No session on `database` afterwards, or PgError naming the ones left. Sessions of
        this login (ELLA's, which a stopped ELLA may leave for a moment, or a hung process)
        are given a moment, then ended; sessions of any other login (a person's psql, a
        DBA's tool) are never ended: named, for the operator to close."""
        deadline = time.monotonic() + wait_seconds
        own = self.login()
        while True:
            others = self.sessions(database)
            foreign = [row for row in others if row[3] != own]
            if foreign:
                raise PgError("%s has %d session(s) of other logins (%s): close them; a copy of the database "
                              "needs none" % (database, len(foreign), describe_sessions(foreign)))
            if not others:
                return 0
            if time.monotonic() >= deadline:
                ended = self.maintenance(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid() AND "
                    + LOGIN_SESSION, (database,))[0][0]
                time.sleep(0.5)
                left = self.sessions(database)
                if left:
                    raise PgError("%s still has %d session(s) (%s)" % (database, len(left), describe_sessions(left)))
                return ended
            time.sleep(0.2)

    def row_counts(self, database=None):
        return dict(self.query(COUNT_ROWS, database=database)[0][0])

    def size(self, database=None):
        return int(self.query("SELECT pg_database_size(%s)", (database or self.database,))[0][0])

    def revision(self, database=None):
        """alembic_version of `database`, None when it has none."""
        rows = self.query("SELECT to_regclass('public.alembic_version') IS NOT NULL", database=database)
        if not rows[0][0]:
            return None
        versions = self.query("SELECT version_num FROM alembic_version", database=database)
        return versions[0][0] if versions else None

    def log_marks(self, database=None):
        """The newest row of ELLA's request log and CLI log (resourcelog, clilog) in `database`:
        what came after these came later. None for a table the database does not have."""
        marks = {}
        for table in LOG_TABLES:
            rows = self.query("SELECT to_regclass(%s) IS NOT NULL", ("public." + table,), database=database)
            marks[table] = (self.query("SELECT coalesce(max(id), 0) FROM %s" % table, database=database)[0][0]
                            if rows[0][0] else None)
        return marks

    def served_since(self, baseline, marks=None, own_commands=()):
        """What ELLA served on the live database after the release's window, read from ELLA's
        own tables: `resourcelog` (ELLA writes a row for every API request: who, what, when)
        and `clilog` (every ella-cli command). After = a row id beyond `marks` (the window's own
        last rows, recorded when it ended), else beyond the `baseline` database's (the rollback
        point: the database as it was once ELLA had stopped), less the window's own ella-cli
        commands (`own_commands`, as clilog's `command` says them); the clock plays no part.
        Counted as served: a request of a logged-in user, and every request that writes (POST,
        PUT, PATCH, DELETE: a login among them); any other ella-cli command. An anonymous read
        (the health gate's /api/v1/config/, `check`'s /api/v1/broadcasts/) serves no one's data."""
        exact = bool(marks) and all(marks.get(table) is not None for table in LOG_TABLES)
        marks = marks if exact else self.log_marks(baseline)
        result = {"requests": 0, "writes": 0, "users": 0, "cli_changes": 0, "first": None, "last": None,
                  "since": "the end of the window" if exact else "the rollback point"}
        if marks.get("resourcelog") is not None:
            row = self.query(
                "SELECT count(*), count(*) FILTER (WHERE method NOT IN ('GET', 'HEAD', 'OPTIONS')), "
                "count(DISTINCT usersession_id), min(time)::text, max(time)::text FROM resourcelog "
                "WHERE id > %s AND (usersession_id IS NOT NULL OR method NOT IN ('GET', 'HEAD', 'OPTIONS'))",
                (marks["resourcelog"],))[0]
            result.update(requests=row[0], writes=row[1], users=row[2], first=row[3], last=row[4])
        if marks.get("clilog") is not None:
            sql = "SELECT count(*) FROM clilog WHERE id > %s"
            params = [marks["clilog"]]
            if not exact and own_commands:
                sql += " AND command NOT IN %s"
                params.append(tuple(own_commands))
            result["cli_changes"] = self.query(sql, tuple(params))[0][0]
        result["served"] = bool(result["requests"] or result["cli_changes"])
        return result

    def server_version(self):
        return int(self.maintenance("SELECT current_setting('server_version_num')::int")[0][0])

    # ---- databases -------------------------------------------------------------------
    def copy(self, source, target):
        """target := a copy of source made by the server (no session may be on source)."""
        others = self.sessions(source)
        if others:
            raise PgError("%s has %d other session(s) (%s): a copy needs it idle"
                          % (source, len(others), describe_sessions(others)))
        # FILE_COPY copies the files and checkpoints once: faster than WAL_LOG for a whole
        # database; it is what CREATE DATABASE always did before PostgreSQL 15.
        strategy = " STRATEGY FILE_COPY" if self.server_version() >= 150000 else ""
        self.maintenance("CREATE DATABASE %s TEMPLATE %s%s" % (quote_ident(target), quote_ident(source), strategy))

    def drop(self, database):
        """Drop a database ella-deploy made (never the live one)."""
        if database == self.database:
            raise PgError("refusing to drop the live database %s" % database)
        try:
            self.maintenance("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(database))
        except PgError:
            # WITH (FORCE) cannot end the server's own autovacuum worker (it runs as no login)
            # for a login that is not a superuser; a plain DROP ends it itself, and still fails,
            # naming them, on any session left.
            self.maintenance("DROP DATABASE IF EXISTS %s" % quote_ident(database))

    def copies(self, kind):
        """The copies ella-deploy made of the live database as `kind` (<db>_<kind>_<stamp>)."""
        pattern = "^%s_%s_[0-9]{8}t[0-9]{6}z$" % (re.escape(self.database), re.escape(kind))
        return [row[0] for row in self.maintenance(
            "SELECT datname FROM pg_database WHERE datname ~ %s ORDER BY datname", (pattern,))]

    def swap(self, replacement, keep_as):
        """The live database becomes `keep_as` and `replacement` takes its name, in ONE
        transaction: both renames happen or neither does."""
        import psycopg2

        live = self.database
        if self.exists(live):
            others = self.sessions(live)
            if others:
                raise PgError("%s has %d session(s) open: stop ELLA everywhere before it is replaced"
                              % (live, len(others)))
        connection = self.connect(self.maintenance_database, autocommit=False)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (live,))
                if cursor.fetchone():
                    cursor.execute("ALTER DATABASE %s RENAME TO %s" % (quote_ident(live), quote_ident(keep_as)))
                cursor.execute("ALTER DATABASE %s RENAME TO %s" % (quote_ident(replacement), quote_ident(live)))
            connection.commit()
        except psycopg2.Error as error:
            connection.rollback()
            raise PgError("swap not done, the live database is unchanged: %s" % _first_line(error)) from None
        finally:
            connection.close()

    # ---- client programs ---------------------------------------------------------------
    def run(self, argv, timeout=None):
        try:
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise PgError("%s is not installed on this host" % argv[0]) from None
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
            raise PgError("%s failed (exit %d): %s" % (argv[0], done.returncode, lines[-1] if lines else "no output"))
        return done


def _first_line(error):
    text = str(getattr(error, "pgerror", None) or error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


# ---- dumps ----------------------------------------------------------------------------

def read_manifest(path):
    try:
        with open(path + MANIFEST_SUFFIX) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise PgError("the manifest of %s is unreadable: %s" % (os.path.basename(path), error)) from None


def write_manifest(path, manifest):
    write_atomic(path + MANIFEST_SUFFIX, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def dump(server, path, database=None, dump_format="custom", jobs=1):
    """pg_dump `database` (default: the live one) to `path` and write its manifest: the row
    count of every table in the very snapshot pg_dump reads (an exported snapshot), so the
    counts are exact even while ELLA writes."""
    import psycopg2

    if os.path.exists(path):
        raise PgError("%s exists already" % path)
    database = database or server.database
    started = time.monotonic()
    holder = server.connect(database, autocommit=False)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
            cursor.execute(COUNT_ROWS)
            counts = dict(cursor.fetchone()[0])
            cursor.execute("SELECT version_num FROM alembic_version" if "alembic_version" in counts else "SELECT NULL")
            row = cursor.fetchone()
            revision = row[0] if row else None
        argv = ["pg_dump", "--no-password", "--format=" + dump_format, "--file=" + path,
                "--snapshot=" + snapshot, "--dbname=" + server.url(database)]
        if dump_format == "directory":
            argv.append("--jobs=%d" % int(jobs))
        server.run(argv)
    except (psycopg2.Error, PgError) as error:
        # A dump cut short is no backup: removed at once, never left for a restore to find.
        remove_backup(path)
        raise PgError("dump of %s: %s" % (database, _first_line(error) if isinstance(error, psycopg2.Error)
                                           else error)) from None
    finally:
        holder.rollback()
        holder.close()
    manifest = {
        "database": database,
        "format": dump_format,
        "revision": revision,
        "row_counts": counts,
        "tables": len(counts),
        "rows": sum(counts.values()),
        "dump_seconds": round(time.monotonic() - started, 2),
        "taken": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_manifest(path, manifest)
    return manifest


def verify_readable(server, path):
    """Every byte of the dump read back by pg_restore (its table of contents and all data):
    a truncated or damaged dump fails here, before anything is touched. `pg_restore --list`
    alone reads only the table of contents and passes a dump cut short."""
    if not os.path.exists(path):
        raise PgError("backup %s does not exist" % path)
    started = time.monotonic()
    server.run(["pg_restore", "--list", path])
    server.run(["pg_restore", "--file=/dev/null", path])
    return round(time.monotonic() - started, 2)


def checksum(path):
    """sha256 of a dump file, or of a directory dump's files in name order; and its size."""
    digest, size = hashlib.sha256(), 0
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    for name in files:
        with open(name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


def size_of(path):
    """Bytes of a dump file, or of a directory dump's files."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def restore_into(server, path, target, expected_counts):
    """A new database `target` holding the dump at `path`, proven complete: pg_restore stops at
    the first error, in one transaction, and every table's row count must equal the
    manifest's. On any failure `target` is dropped again and nothing else was touched."""
    if expected_counts is None:
        raise PgError("backup %s has no manifest with row counts: it cannot be proven complete"
                      % os.path.basename(path))
    if server.exists(target):
        raise PgError("database %s exists already" % target)
    encoding = server.maintenance(
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = %s",
        (server.database,))
    options = ""
    if encoding:
        options = " ENCODING '%s' LC_COLLATE '%s' LC_CTYPE '%s'" % tuple(
            value.replace("'", "") for value in encoding[0])
    server.maintenance("CREATE DATABASE %s TEMPLATE template0%s" % (quote_ident(target), options))
    try:
        server.run(["pg_restore", "--no-password", "--exit-on-error", "--single-transaction", "--no-owner",
                    "--dbname=" + server.url(target), path])
        restored = server.row_counts(target)
        differences = count_differences(dict(expected_counts), restored)
        if differences:
            shown = ", ".join("%s %s" % (table, pair) for table, pair in list(differences.items())[:5])
            raise PgError("restored rows differ from the backup's manifest (table [expected, restored]): %s" % shown)
        return restored
    except Exception:
        server.drop(target)
        raise


def restore(server, path, keep_replaced=True, when=None):
    """Replace the live database by the dump at `path`, all or nothing (see the module
    docstring). Returns what was done; the replaced database is kept under a new name
    unless keep_replaced is false."""
    when = when or stamp()
    verify_seconds = verify_readable(server, path)
    manifest = read_manifest(path)
    scratch = "%s_restore_%s" % (server.database, when)
    started = time.monotonic()
    counts = restore_into(server, path, scratch, (manifest or {}).get("row_counts"))
    replaced = "%s_replaced_%s" % (server.database, when)
    try:
        server.swap(scratch, replaced)
    except PgError:
        server.drop(scratch)
        raise
    kept = replaced if server.exists(replaced) else None
    if kept and not keep_replaced:
        server.drop(kept)
        kept = None
    return {"restored_from": path, "tables": len(counts), "rows": sum(counts.values()),
            "revision": (manifest or {}).get("revision"), "verify_seconds": verify_seconds,
            "restore_seconds": round(time.monotonic() - started, 2), "replaced_kept_as": kept}


# ---- pruning ---------------------------------------------------------------------------

# <label>-<UTC stamp>-<from>-to-<to>.dump|.dir, as the backup entry point names them; <to> is
# the release's version, `manual` (ella-deploy backup) or `task-<folder>` (before a db-task).
BACKUP_NAME = re.compile(r"^(?P<label>.+)-(?P<stamp>\d{8}T\d{6}Z)-(?P<from>.+?)-to-(?P<to>.+?)\.(?:dump|dir)$")


def backup_kind(name):
    """release, manual or task, from a backup's name; None for a file that is no backup."""
    match = BACKUP_NAME.match(name)
    if not match:
        return None
    to = match.group("to")
    return "manual" if to == "manual" else "task" if to.startswith("task-") else "release"


def remove_backup(path):
    import shutil

    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.unlink(path)
    if os.path.exists(path + MANIFEST_SUFFIX):
        os.unlink(path + MANIFEST_SUFFIX)


def unaccepted_versions(audit_log):
    """Versions with a successful release in the audit log and no acceptance after it (a line a
    crash tore is skipped)."""
    pending = {}
    try:
        with open(audit_log) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("outcome") != "success":
            continue
        if record.get("kind") == "release" and record.get("to_version"):
            pending[record["to_version"]] = True
        elif record.get("kind") == "accept":
            pending.pop(record.get("version"), None)
    return sorted(pending)


def prune_backups(directory, keep, protect=(), unaccepted=()):
    """Backups pruned by what they are: a dump without its manifest (cut short: the manifest
    is written last) goes at once; of each kind (release, manual, task) the newest keep[kind]
    stay; never one named in `protect` or in LAST_SUCCESSFUL (the last successful release's),
    nor any backup of a release not yet accepted (`unaccepted` versions: its rollback point
    may be gone, the backup is the data before it). Returns {"partial": [...], "pruned": [...]}."""
    protect = {os.path.basename(p) for p in protect if p}
    try:
        with open(os.path.join(directory, "LAST_SUCCESSFUL")) as handle:
            protect.add(handle.read().strip())
    except OSError:
        pass
    removed = {"partial": [], "pruned": []}
    by_kind = {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        kind = backup_kind(name)
        if kind is None:
            continue
        path = os.path.join(directory, name)
        if not os.path.exists(path + MANIFEST_SUFFIX):
            remove_backup(path)
            removed["partial"].append(name)
            continue
        by_kind.setdefault(kind, []).append(name)
    for kind, names in by_kind.items():
        # Newest first, by the stamp in the name (mtimes change when files are copied).
        names.sort(key=lambda n: BACKUP_NAME.match(n).group("stamp"), reverse=True)
        for name in names[int(keep.get(kind, 10)):]:
            if name in protect or (kind == "release" and BACKUP_NAME.match(name).group("to") in unaccepted):
                continue
            remove_backup(os.path.join(directory, name))
            removed["pruned"].append(name)
    return removed
