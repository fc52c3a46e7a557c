"""ELLA's logs on a host: when a line was written, and the lines of the last minutes.

Shared by ella_check_facts (the debug checklist) and ella_log_tail (`ella-deploy logs`).
Read on the host, where its local time zone is the one ELLA's logging writes in.
"""

from __future__ import annotations

import datetime
import os
import re
import time

# Logs are read from their end, at most this much: enough for the window on a busy day.
TAIL_BYTES = 16 * 1024 * 1024

# The stamps of ELLA's logs, all near the start of a line:
# - ELLA's own log and supervisord's: "2026-11-25 20:00:00,123 [INFO] ..." in the host's local
#   time (no offset);
# - gunicorn's error log: "[2026-11-25 20:00:00 +0000] [42] [DEBUG] ...";
# - access lines (gunicorn in api.log, nginx.access): '10.0.0.1 - - [25/Nov/2026:20:00:00 +0000] "GET ...'.
LOCAL_TIME = re.compile(r"^\[?(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,]\d+)?(?: ?([+-]\d{4}|Z))?\]?")
ACCESS_TIME = re.compile(r"^\S+ \S+ \S+ \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]")


def line_time(line):
    """When a log line was written (epoch seconds), or None for a line that continues the one
    before it (a traceback, gunicorn's configuration dump)."""
    match = ACCESS_TIME.match(line)
    if match:
        return datetime.datetime.strptime(match.group(1), "%d/%b/%Y:%H:%M:%S %z").timestamp()
    match = LOCAL_TIME.match(line)
    if not match:
        return None
    offset = match.group(3)
    stamp = f"{match.group(1)}T{match.group(2)}"
    if offset == "Z":
        return datetime.datetime.fromisoformat(stamp + "+00:00").timestamp()
    if offset:
        return datetime.datetime.fromisoformat(f"{stamp}{offset[:3]}:{offset[3:]}").timestamp()
    # No offset: the host's local time, as ELLA's logging and supervisord write it.
    return time.mktime(datetime.datetime.fromisoformat(stamp).timetuple())


def window_lines(path, since):
    """The lines of `path` stamped at or after `since` (epoch), with the unstamped lines
    that follow them (a traceback continues the line before it)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    keeping = False
    for line in text.splitlines():
        stamp = line_time(line)
        if stamp is not None:
            keeping = stamp >= since
        if keeping:
            yield line


