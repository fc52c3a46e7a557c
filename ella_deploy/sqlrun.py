"""psql's answer to a marked script (dbtask.psql_input): per statement its tag, rows and time.

Standard library only: the playbooks' filter plugin loads this file by path.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "@@ella-task"
# psql's command tags ("UPDATE 3", "INSERT 0 5", "CREATE INDEX"), its SELECT footer and \\timing.
_TAG = re.compile(r"^(?P<tag>[A-Z][A-Z ]*?)(?: (?P<first>\d+))?(?: (?P<second>\d+))?$")
_FOOTER = re.compile(r"^\((?P<rows>\d+) rows?\)$")
_TIME = re.compile(r"^Time: (?P<ms>[\d.,]+) ms")
# The psql output lines that may leave the host (grep -E): markers, tags, footers, timings.
# Rows a SELECT prints stay on the host: they may be patient data.
OUTPUT_FILTER = rf"^({MARKER} |Time: |\([0-9]+ rows?\)$|[A-Z][A-Z ]*( [0-9]+)*$)"


def parse_output(statements: list[dict[str, Any]], stdout: str) -> list[dict[str, Any]]:
    """Per statement that ran (statements: number, line, summary): its command tag, rows, ms.
    A statement that started but has no tag is the one that failed."""
    by_number = {int(s["number"]): s for s in statements}
    results: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in stdout.splitlines():
        line = line.rstrip()
        if line.startswith(MARKER + " rows "):
            # "@@ella-task rows N COMMAND COUNT": what EXECUTE did (dbtask.psql_input).
            parts = line.split()
            if len(parts) == 5 and parts[2].isdigit() and int(parts[2]) in results and parts[4].isdigit():
                results[int(parts[2])].update(tag=parts[3], rows=int(parts[4]))
            continue
        if line.startswith(MARKER + " "):
            word = line.split()[1]
            if word == "end" or not word.isdigit() or int(word) not in by_number:
                current = None
                continue
            statement = by_number[int(word)]
            current = results.setdefault(int(word), {
                "number": int(word), "line": statement.get("line"), "summary": statement.get("summary"),
                "tag": None, "rows": None, "ms": None})
            continue
        if current is None:
            continue
        if (timing := _TIME.match(line)) is not None:
            # The statement's own time comes first (the row count's SELECT follows it).
            if current["ms"] is None:
                current["ms"] = float(timing.group("ms").replace(",", ""))
        elif (footer := _FOOTER.match(line)) is not None:
            current["tag"], current["rows"] = "SELECT", int(footer.group("rows"))
        elif (tag := _TAG.match(line)) is not None and current["tag"] is None:
            current["tag"] = tag.group("tag")
            # INSERT oid rows; UPDATE/DELETE/MERGE/COPY/FETCH rows; CREATE INDEX (none).
            count = tag.group("second") or tag.group("first")
            current["rows"] = int(count) if count is not None else None
    return [results[number] for number in sorted(results)]
