"""`ella-deploy history`: the environment's audit log as a table."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

from ella_deploy import audit
from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import run_playbook


# What this process read of each environment's audit log (a release reads its staging's twice:
# for the pre-flight and for the change record).
_READ: dict[Path, list[dict[str, Any]]] = {}
_CHAIN: dict[Path, dict[str, Any]] = {}


def fetch(inventory: Path, reuse: bool = False) -> list[dict[str, Any]]:
    """The environment's audit records; with `reuse`, as this process read them already, if it
    did (for another environment's log, which this process does not write)."""
    if reuse and inventory in _READ:
        return list(_READ[inventory])
    result = run_playbook("history.yml", inventory)
    if not result.ok:
        raise EllaDeployError(f"history: {result.error_summary()}", ExitCode.FAILED)
    content = base64.b64decode(result.published.get("ella_audit_log", "")).decode("utf-8", "surrogateescape")
    _READ[inventory] = audit.read_records(content)
    _CHAIN[inventory] = audit.verify_chain(content)
    return list(_READ[inventory])


def chain(inventory: Path) -> dict[str, Any]:
    """Whether the audit log this process read of the environment is intact (audit.verify_chain)."""
    if inventory not in _CHAIN:
        fetch(inventory)
    return _CHAIN[inventory]


def _when(record: dict[str, Any]) -> str:
    started = record.get("started")
    if started not in (None, ""):
        return datetime.datetime.fromtimestamp(float(started), datetime.UTC).strftime("%Y-%m-%d %H:%M")
    return str(record.get("recorded", "?"))[:16].replace("T", " ")


def render(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no audit records"
    header = ("WHEN (UTC)", "KIND", "OPERATOR", "HOST", "CHANGE", "OUTCOME", "DOWNTIME")
    rows = [header]
    for record in records:
        if record.get("kind") == "release":
            change = f"{record.get('from_version') or 'none'} -> {record.get('to_version')} ({record.get('change_kind')})"
        else:
            change = str(record.get("version", ""))
        downtime = record.get("downtime_seconds")
        rows.append((
            _when(record), str(record.get("kind", "?")), str(record.get("operator", "?")),
            str(record.get("host", "?")), change, str(record.get("outcome", "?")),
            f"{float(downtime):.1f}s" if downtime not in (None, "") else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)
