"""Notices by e-mail: `notify KIND` and `report-tsd`, composed by notify.yml from the
ella_notify role's Norwegian templates, and sent only when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ella_deploy import versions
from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import ProgressCallback, run_playbook

KINDS = ("downtime", "release", "acceptance", "done", "down")
NEEDS_TIME = ("downtime", "release")
NEEDS_VERSION = ("release", "acceptance", "done")


def validate(kind: str, at: str | None, version: str | None) -> None:
    """Bad input is refused before anything runs."""
    if at and not at.isprintable():
        raise EllaDeployError("notify: --at must be one line of text", ExitCode.USAGE)
    if kind in NEEDS_TIME and not (at or "").strip():
        raise EllaDeployError(f"notify {kind}: say when with --at, e.g. --at \"fredag 28. november kl. 16–18\"",
                              ExitCode.USAGE)
    if kind in NEEDS_VERSION and not version:
        raise EllaDeployError(f"notify {kind}: say which version with --version X.Y.Z", ExitCode.USAGE)
    if version and not versions.VERSION.match(version):
        raise EllaDeployError(f"notify: --version {version!r} is not X.Y.Z", ExitCode.USAGE)


def compose(inventory: Path, kind: str, send: bool, *, at: str = "", version: str = "", summary: str = "",
            attachments: list[dict[str, str]] | None = None,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    extravars = {"ella_notify_kind": kind, "ella_notify_send": send, "ella_notify_at": at or "",
                 "ella_notify_version": version or "", "ella_notify_summary": summary,
                 "ella_notify_attachments": attachments or []}
    result = run_playbook("notify.yml", inventory, extravars=extravars, progress=progress)
    notice = result.published.get("ella_notice")
    if not result.ok or notice is None:
        raise EllaDeployError(f"notify {kind}: {result.error_summary()}", ExitCode.FAILED)
    return dict(notice)


def redacted(measured: dict[str, Any]) -> dict[str, Any]:
    """The checklist as TSD may read it: counts, times and states, no text that can carry
    patient data (query text, uiexception messages, log lines)."""
    import copy

    measured = copy.deepcopy(measured)
    database = measured.get("database") or {}
    for query in database.get("long_running") or []:
        query["query"] = "(not shown)"
    for exception in database.get("uiexceptions_newest") or []:
        exception["message"] = "(not shown)"
    log = (measured.get("api") or {}).get("log") or {}
    if log.get("newest_server_error"):
        log["newest_server_error"] = "(not shown)"
    return measured


def tsd_attachments(inventory: Path) -> list[dict[str, str]]:
    """`check` and `status` as text, as they are now; what could not run says why."""
    from ella_deploy import check, status

    attachments = []
    try:
        measured = redacted(check.measure(inventory))
        attachments.append({"filename": "ella-check.txt", "content": check.render_text(check.evaluate(measured), measured)})
    except EllaDeployError as error:
        attachments.append({"filename": "ella-check.txt", "content": f"check could not run: {error.message}\n"})
    try:
        attachments.append({"filename": "ella-status.txt", "content": status.render(status.collect(inventory))})
    except EllaDeployError as error:
        attachments.append({"filename": "ella-status.txt", "content": f"status could not run: {error.message}\n"})
    return attachments
