"""``ella-cli`` of the ELLA stand-in (test double), with the words of ELLA's own CLI.

Results go to stdout; failures are one line on stderr (printed by ``main``):
exit 1 when the command ran and failed, 2 for usage errors and an unreachable
database.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from ella_standin import db
from ella_standin.encoding import to_json
from ella_standin.errors import ExitCode, StandinError
from ella_standin.image import STANDIN_DESCRIPTION, Image
from ella_standin.migrations import Migration
from ella_standin.settings import Settings

PROG = "ella-cli"

Command = Callable[[Image, Settings, argparse.Namespace], int]


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise StandinError(f"{message} (see '{self.prog} --help')", ExitCode.USAGE)


def main(image: Image, settings: Settings, argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    command: Command = args.command
    return command(image, settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog=PROG, description=f"ella-cli of the {STANDIN_DESCRIPTION}.")
    groups = parser.add_subparsers(
        dest="group", metavar="GROUP", required=True, parser_class=_OneLineErrorParser
    )

    database = groups.add_parser("database", help="schema migrations").add_subparsers(
        dest="action", metavar="COMMAND", required=True
    )
    upgrade = database.add_parser("upgrade", help="apply pending migrations")
    upgrade.add_argument("target", choices=["head"])
    upgrade.set_defaults(command=_database_upgrade)
    database.add_parser(
        "compare", help="exit 0 if the database is at this image's head, else 1"
    ).set_defaults(command=_database_compare)
    database.add_parser("current", help="print the database's revision").set_defaults(
        command=_database_current
    )
    database.add_parser("head", help="print this image's head revision").set_defaults(
        command=_database_head
    )

    broadcast = groups.add_parser("broadcast", help="banner messages").add_subparsers(
        dest="action", metavar="COMMAND", required=True
    )
    new = broadcast.add_parser("new", help="add an active broadcast, print its id")
    new.add_argument("message")
    new.set_defaults(command=_broadcast_new)
    listing = broadcast.add_parser("list", help="id, active, date and message of each")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(command=_broadcast_list)
    deactivate = broadcast.add_parser("deactivate", help="deactivate a broadcast by id")
    deactivate.add_argument("id", type=int)
    deactivate.set_defaults(command=_broadcast_deactivate)

    users = groups.add_parser("users", help="user administration").add_subparsers(
        dest="action", metavar="COMMAND", required=True
    )
    add_groups = users.add_parser("add_groups", help="upsert usergroups by name")
    add_groups.add_argument("file", type=Path, help='JSON list of {"name": ..., "config": {...}}')
    add_groups.set_defaults(command=_users_add_groups)

    filterconfigs = groups.add_parser("filterconfigs", help="filter configurations").add_subparsers(
        dest="action", metavar="COMMAND", required=True
    )
    update = filterconfigs.add_parser("update", help="upsert filterconfigs by name")
    update.add_argument(
        "file",
        type=Path,
        help='JSON list of {"name": ..., "filterconfig": {...}, "active": true}',
    )
    update.set_defaults(command=_filterconfigs_update)
    return parser


def _database_upgrade(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    def announce(migration: Migration) -> None:
        print(
            f"Running upgrade {migration.down_revision or '<base>'} -> {migration.revision}, "
            f"{migration.description}",
            flush=True,
        )

    with db.session(settings.require_db_url()) as conn:
        applied = db.upgrade(conn, image.chain, on_start=announce)
    state = "upgraded to" if applied else "already at"
    print(f"database {state} head {image.head or 'none'}")
    return ExitCode.OK


def _database_compare(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    with db.session(settings.require_db_url()) as conn:
        comparison = db.compare(conn, image.chain)
    print(comparison.describe())
    return ExitCode.OK if comparison.matches else ExitCode.FAILURE


def _database_current(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    with db.session(settings.require_db_url()) as conn:
        print(db.current_revision(conn) or "none")
    return ExitCode.OK


def _database_head(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    print(image.head or "none")
    return ExitCode.OK


def _broadcast_new(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    with db.transaction(settings.require_db_url()) as cur:
        cur.execute("INSERT INTO broadcast (message) VALUES (%s) RETURNING id", (args.message,))
        print(cur.fetchone()[0])
    return ExitCode.OK


def _broadcast_list(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    with db.transaction(settings.require_db_url()) as cur:
        cur.execute("SELECT id, active, date_created, message FROM broadcast ORDER BY id")
        rows: list[tuple[int, bool, datetime, str]] = cur.fetchall()
    if args.json:
        keys = ("id", "active", "date_created", "message")
        print(to_json([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
    else:
        for id_, active, date_created, message in rows:
            print(f"{id_}\t{str(active).lower()}\t{date_created.isoformat()}\t{message}")
    return ExitCode.OK


def _broadcast_deactivate(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    with db.transaction(settings.require_db_url()) as cur:
        cur.execute("UPDATE broadcast SET active = false WHERE id = %s RETURNING id", (args.id,))
        if cur.fetchone() is None:
            raise StandinError(f"no broadcast with id {args.id}")
    print(f"broadcast {args.id} deactivated")
    return ExitCode.OK


@dataclass(frozen=True)
class _UpsertTable:
    """A table whose rows admin commands upsert by their unique ``name``."""

    table: str
    label: str
    value_columns: tuple[str, ...]
    parse: Callable[[dict[str, Any]], tuple[Any, ...]]


def _usergroup_values(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (_json_object(entry, "config"),)


def _filterconfig_values(entry: dict[str, Any]) -> tuple[Any, ...]:
    active = entry.get("active", True)
    if not isinstance(active, bool):
        raise StandinError(
            f"filterconfig {entry['name']!r}: 'active' must be true or false", ExitCode.USAGE
        )
    # "config" is accepted too, as the usergroup files spell it.
    key = "filterconfig" if "filterconfig" in entry or "config" not in entry else "config"
    return (_json_object(entry, key), active)


USERGROUPS = _UpsertTable("usergroup", "usergroups", ("config",), _usergroup_values)
FILTERCONFIGS = _UpsertTable(
    "filterconfig", "filterconfigs", ("filterconfig", "active"), _filterconfig_values
)


def _users_add_groups(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    return _upsert_file(USERGROUPS, args.file, settings)


def _filterconfigs_update(image: Image, settings: Settings, args: argparse.Namespace) -> int:
    return _upsert_file(FILTERCONFIGS, args.file, settings)


def _upsert_file(target: _UpsertTable, path: Path, settings: Settings) -> int:
    """Upsert every entry of ``path`` in one transaction; print what changed."""
    rows = [(_entry_name(entry), target.parse(entry)) for entry in _json_entries(path)]
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    columns = ", ".join(target.value_columns)
    with db.transaction(settings.require_db_url()) as cur:
        for name, values in rows:
            # Table and column names are the constants above, never input.
            cur.execute(f"SELECT {columns} FROM {target.table} WHERE name = %s FOR UPDATE", (name,))
            existing = cur.fetchone()
            params = tuple(json.dumps(v) if isinstance(v, dict) else v for v in values)
            if existing is None:
                placeholders = ", ".join(["%s"] * (len(values) + 1))
                cur.execute(
                    f"INSERT INTO {target.table} (name, {columns}) VALUES ({placeholders})",
                    (name, *params),
                )
                counts["added"] += 1
            elif tuple(existing) != values:
                assignments = ", ".join(f"{column} = %s" for column in target.value_columns)
                cur.execute(
                    f"UPDATE {target.table} SET {assignments} WHERE name = %s", (*params, name)
                )
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
    print(f"{target.label}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return ExitCode.OK


def _json_entries(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StandinError(f"cannot read {path}: {error.strerror}", ExitCode.USAGE) from error
    except ValueError as error:
        raise StandinError(f"{path} is not valid JSON: {error}", ExitCode.USAGE) from error
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise StandinError(f"{path} must hold a JSON list of objects", ExitCode.USAGE)
    return entries


def _entry_name(entry: dict[str, Any]) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise StandinError(
            f"every entry needs a non-empty string 'name': {entry!r}", ExitCode.USAGE
        )
    return name


def _json_object(entry: dict[str, Any], key: str) -> dict[str, Any]:
    value = entry.get(key)
    if not isinstance(value, dict):
        raise StandinError(f"{entry['name']!r}: '{key}' must be a JSON object", ExitCode.USAGE)
    return value
