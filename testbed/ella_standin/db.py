"""PostgreSQL access for the ELLA stand-in (test double): connections and migrations.

psycopg2 is imported on first use, so ``inspect`` and ``database head`` work on a
python3 without it. Migrations run like alembic with ``transaction_per_migration``:
each one, together with its ``alembic_version`` update, commits in its own
transaction, so a failing migration leaves the database at the revision before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ella_standin.errors import ExitCode, StandinError
from ella_standin.migrations import Migration
from ella_standin.settings import redact_db_url

Connection = Any
"""A psycopg2 connection (psycopg2 ships no type information)."""

CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "ella-standin"
MIGRATION_LOCK_ID = 0x656C6C61
"""pg_advisory_lock key that serialises concurrent ``upgrade`` runs on one database."""


def driver() -> ModuleType:
    """The psycopg2 module, with its ``errors`` submodule loaded."""
    try:
        import psycopg2  # type: ignore[import-untyped]
        import psycopg2.errors  # type: ignore[import-untyped]
    except ImportError:
        raise StandinError(
            "psycopg2 is not available to this python3 (Debian: apt-get install python3-psycopg2)",
            ExitCode.USAGE,
        ) from None
    module: ModuleType = psycopg2
    return module


def one_line(error: BaseException) -> str:
    """libpq messages span lines (hints, tab-indented details); a user gets one."""
    return re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__


def connect(db_url: str) -> Connection:
    psycopg2 = driver()
    try:
        return psycopg2.connect(
            db_url, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=APPLICATION_NAME
        )
    except psycopg2.Error as error:
        raise StandinError(
            f"cannot connect to database {redact_db_url(db_url)}: {one_line(error)}",
            ExitCode.USAGE,
        ) from error


@contextmanager
def connection(db_url: str) -> Iterator[Connection]:
    """A connection, closed afterwards; database errors pass through untranslated."""
    conn = connect(db_url)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def session(db_url: str) -> Iterator[Connection]:
    """A connection, closed afterwards; database errors become a one-line StandinError."""
    psycopg2 = driver()
    with connection(db_url) as conn:
        try:
            yield conn
        except psycopg2.Error as error:
            raise StandinError(f"database error: {one_line(error)}") from error


@contextmanager
def transaction(db_url: str) -> Iterator[Any]:
    """A cursor in one transaction: committed if the block succeeds, else rolled back."""
    with session(db_url) as conn, conn, conn.cursor() as cur:
        yield cur


def current_revision(conn: Connection) -> str | None:
    """The revision in ``alembic_version``; None for a database alembic never touched."""
    with conn, conn.cursor() as cur:
        return read_revision(cur)


def read_revision(cur: Any) -> str | None:
    cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT version_num FROM alembic_version")
    rows = cur.fetchall()
    if len(rows) > 1:
        revisions = ", ".join(sorted(row[0] for row in rows))
        raise StandinError(f"alembic_version holds several revisions ({revisions})")
    return rows[0][0] if rows else None


@dataclass(frozen=True)
class Comparison:
    current: str | None
    head: str | None

    @property
    def matches(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.matches:
            return f"database matches image: at {self.head or 'none (empty)'}"
        if self.current is None:
            return f"database is empty, image expects {self.head}"
        return f"database at {self.current}, image expects {self.head or 'an empty database'}"


def compare(conn: Connection, chain: Sequence[Migration]) -> Comparison:
    return Comparison(current_revision(conn), chain[-1].revision if chain else None)


def pending(conn: Connection, chain: Sequence[Migration]) -> list[Migration]:
    """Migrations of ``chain`` not yet applied; refuses a revision the chain doesn't know."""
    current = current_revision(conn)
    if current is None:
        return list(chain)
    known = [m.revision for m in chain]
    if current not in known:
        raise StandinError(
            f"database at revision {current}, which this image does not know "
            "(is the database newer than the image?); refusing to upgrade"
        )
    return list(chain[known.index(current) + 1 :])


def upgrade(
    conn: Connection,
    chain: Sequence[Migration],
    on_start: Callable[[Migration], None] = lambda migration: None,
) -> list[Migration]:
    """Apply the pending migrations of ``chain``, each committed on its own; return them.

    A concurrent run waits for this one and then finds nothing pending. The lock is
    held by the connection, so the caller's closing of it releases the lock.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
    to_apply = pending(conn, chain)
    if to_apply:
        _create_version_table(conn)
    for migration in to_apply:
        on_start(migration)
        _apply(conn, migration)
    return to_apply


def _create_version_table(conn: Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS alembic_version ("
            " version_num VARCHAR(32) NOT NULL,"
            " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
    conn.commit()


def _apply(conn: Connection, migration: Migration) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version FOR UPDATE")
            row = cur.fetchone()
            found = row[0] if row else None
            if found != migration.down_revision:
                raise StandinError(
                    f"database moved to {found or 'none'} while upgrading; "
                    f"expected {migration.down_revision or 'none'}"
                )
            migration.upgrade(cur)
            _stamp(cur, migration)
    except Exception as error:
        conn.rollback()
        if isinstance(error, StandinError):
            raise
        raise StandinError(
            f"migration {migration.revision} ({migration.description}) failed: "
            f"{one_line(error)}; database left at revision {migration.down_revision or 'none'}"
        ) from error
    conn.commit()


def _stamp(cur: Any, migration: Migration) -> None:
    if migration.down_revision is None:
        cur.execute("INSERT INTO alembic_version (version_num) VALUES (%s)", (migration.revision,))
    else:
        cur.execute(
            "UPDATE alembic_version SET version_num = %s WHERE version_num = %s",
            (migration.revision, migration.down_revision),
        )
