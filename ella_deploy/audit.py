"""The audit log: one JSON line per command that changed anything, on the shared storage.

Step timing is derived here from the marks a playbook sets as it goes (`ella_release_marks`:
a step's start is the previous step's end). The playbooks load this file through
ansible/plugins/filter/ella.py; the CLI uses it to present `history`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
import shlex
import socket
from collections.abc import Sequence
from typing import Any

LOCK_TOKEN = secrets.token_hex(20)

SECRET_OPTION = re.compile(r"(?i)(--?[\w-]*(?:password|secret|token)[\w-]*)(=|\s+)(\S+)")

# Where downtime starts and ends among the marks of a release (or of its rollback).
DOWNTIME_START = "stop"
DOWNTIME_ENDS = ("broadcast", "rollback_done")


def steps_from_marks(marks: list[dict[str, Any]], finished: float) -> list[dict[str, Any]]:
    steps = []
    for index, mark in enumerate(marks):
        end = marks[index + 1]["at"] if index + 1 < len(marks) else finished
        steps.append({
            "name": mark["step"],
            "start": round(float(mark["at"]), 3),
            "end": round(float(end), 3),
            "seconds": round(float(end) - float(mark["at"]), 3),
        })
    return steps


def downtime_seconds(marks: list[dict[str, Any]], finished: float | None = None) -> float | None:
    """Seconds from ELLA's stop until it served again; None if it was never stopped.

    When nothing ended the downtime (a failed rollback), it lasts until `finished`.
    """
    at = {m["step"]: float(m["at"]) for m in marks}
    if DOWNTIME_START not in at:
        return None
    for end in DOWNTIME_ENDS:
        if end in at:
            return round(at[end] - at[DOWNTIME_START], 3)
    return round(finished - at[DOWNTIME_START], 3) if finished is not None else None


def read_records(text: str) -> list[dict[str, Any]]:
    """Records of an audit log; a line that is not JSON (a write torn by a crash) is reported
    as such, not skipped silently: an UNREADABLE entry without a kind, which no rule reads."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        records.append(record if isinstance(record, dict) else {"outcome": "UNREADABLE", "line": number})
    return records


def valid_records(text: str) -> list[dict[str, Any]]:
    """The records an operation may act on: those that read as records (a torn line skipped)."""
    return [record for record in read_records(text) if record.get("outcome") != "UNREADABLE"]


def line_digest(line: str) -> str:
    """What the next record names as `prev`: the sha256 of a line's bytes, its newline left out."""
    # (surrogateescape: a torn line may end inside a character; its bytes are what count.)
    return hashlib.sha256(line.encode("utf-8", "surrogateescape")).hexdigest()


def verify_chain(text: str) -> dict[str, Any]:
    """Whether the audit log is as its writers left it: every record since the first that
    carries `prev` names the sha256 of the line before it (ella_audit writes it, under a lock,
    from the file's own last line), so an edited, removed or inserted line breaks the chain at
    the record after it. Lines that are no record (a torn write, closed by the next writer)
    are listed and skipped; they are part of the chain all the same. Records from before the
    chain began (older ella-deploy) are counted as unchained. What the chain cannot show: the
    last record edited with nothing after it."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    torn, broken, chained, unchained = [], [], 0, 0
    started = False
    for index, line in enumerate(lines):
        number = index + 1
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if line.strip():
                torn.append(number)
            continue
        if "prev" not in record:
            if started:
                broken.append({"line": number, "why": "a record without the link to the line before it"})
            else:
                unchained += 1
            continue
        started = True
        chained += 1
        expected = line_digest(lines[index - 1]) if index > 0 else ""
        if record["prev"] != expected:
            broken.append({"line": number, "why": "the line before it is not the one this record was written after"})
    return {"intact": not broken, "records": chained + unchained, "chained": chained, "unchained": unchained,
            "torn_lines": torn, "broken": broken}


def describe_chain(chain: dict[str, Any]) -> str:
    """One line on the chain, for `history --verify` and the refusals that rest on it."""
    if chain["broken"]:
        first = chain["broken"][0]
        return (f"NOT intact: line {first['line']}: {first['why']}"
                + (f" (and {len(chain['broken']) - 1} more)" if len(chain["broken"]) > 1 else ""))
    text = f"intact: {chain['chained']} chained record(s)"
    if chain["unchained"]:
        text += f", {chain['unchained']} from before the chain"
    if chain["torn_lines"]:
        text += f"; torn line(s) skipped: {', '.join(map(str, chain['torn_lines']))}"
    return text


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def sanitized_command(argv: Sequence[str]) -> str:
    """The command line for the lock and the audit log, with any secret-looking value removed."""
    return SECRET_OPTION.sub(r"\1\2***", shlex.join(["ella-deploy", *argv]))


def without_data(argv: Sequence[str], data: Sequence[str]) -> list[str]:
    """The command line with the values that are data (a broadcast's message, a user name given
    to `cli`) replaced: the record keeps what was run, and their sha256 beside it."""
    values = {value for value in data if value}
    return ["<data>" if item in values else item for item in argv]


def run_metadata(command: str, fenced_hosts: Sequence[str] = ()) -> dict[str, Any]:
    """Who ran what: the extra vars every changing playbook records (ella_deploy_*)."""
    return {
        "ella_deploy_operator": operator(),
        "ella_deploy_command": command,
        "ella_deploy_fenced_hosts": list(fenced_hosts),
        # The lock names this process as its holder: `recover` on this machine can tell it ended.
        "ella_deploy_controller_pid": os.getpid(),
        # The lock's token, one per invocation: after an interrupt, this invocation's own
        # `recover` takes its lock over. Travels in the extra-vars file, never on a command line.
        "ella_deploy_lock_token": LOCK_TOKEN,
    }
