"""Daily operations: ella-cli in the live image, broadcasts, a backup on its own."""

from __future__ import annotations

import datetime
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ella_deploy import audit
from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import ProgressCallback, run_playbook

# ella-cli commands that only read: no lock, no audit record for them.
READ_ONLY = (("broadcast", "list"), ("database", "current"), ("database", "compare"), ("database", "history"),
             ("filterconfigs", "list"), ("users", "list"))
# Commands whose output says whether they did anything (they exit 0 either way).
EXPECT = {("broadcast", "new"): "broadcast_new", ("broadcast", "deactivate"): "broadcast_deactivate"}
GLOB = re.compile(r"[*?\[\]]")


def ella_cli(inventory: Path, args: list[str], command: str,
             progress: ProgressCallback | None = None,
             confirm: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Run `ella-cli ARGS` in the live image on the active host; its rc, stdout and stderr.
    `confirm` is called before a command that writes runs (it raises to stop it)."""
    if not args:
        raise EllaDeployError("cli: give the ella-cli arguments after --, e.g. cli -- broadcast list", ExitCode.USAGE)
    if "database" in args and {"upgrade", "downgrade"} & set(args):
        raise EllaDeployError("cli: migrations run in a release, after a verified backup (ella-deploy release)",
                              ExitCode.USAGE)
    if tuple(args[:2]) == ("broadcast", "new") and GLOB.search(" ".join(args[2:])):
        # ELLA's bin/ella-cli passes its arguments on unquoted: the shell in the image splits
        # and globs them ("*" becomes the names of the files there).
        raise EllaDeployError("broadcast: the message may not hold * ? [ ] (ELLA's ella-cli would expand them "
                              "into file names)", ExitCode.USAGE)
    changes = tuple(args[:2]) not in READ_ONLY
    if changes and confirm is not None:
        confirm(args)
    expect = EXPECT.get(tuple(args[:2]), "none")
    extravars = {"ella_cli_args": args, "ella_cli_changes": changes, **audit.run_metadata(command),
                 # ELLA says what it did; for these, nothing else counts as done.
                 "ella_cli_expect": expect,
                 # Any other command's output may hold a credential (users reset_password): it
                 # waits in a private file on the host, never in a result or the artifacts.
                 "ella_cli_private_output": expect == "none"}
    result = run_playbook("cli.yml", inventory, extravars=extravars, progress=progress)
    published = result.published.get("ella_cli_result")
    if not result.ok or published is None:
        raise EllaDeployError(f"cli: {result.error_summary()}",
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    published = dict(published)
    if published.get("output_file"):
        published.update(private_output(inventory, str(published["host"]), str(published.pop("output_file"))))
    return published


def private_output(inventory: Path, host: str, path: str) -> dict[str, str]:
    """What ella-cli printed, read once from its private file on `host` over this CLI's own SSH
    connection (the inventory's settings), and the file removed: it reaches the operator's
    terminal and nothing else."""
    import json

    from ella_deploy import remote

    connection = remote.connect(inventory, host, "cli")
    quoted = shlex.quote(path)
    argv = remote.batch_ssh(connection, connection.as_service_user(
        ["sh", "-c", f"cat {quoted} && rm -f {quoted}"]))
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        raise EllaDeployError(f"cli: the output waits on {host} in {path} (the service user's only): {error}",
                              ExitCode.FAILED) from error
    try:
        output = json.loads(done.stdout) if done.returncode == 0 else None
    except ValueError:
        output = None
    if not isinstance(output, dict):
        raise EllaDeployError(f"cli: the output waits on {host} in {path} (the service user's only); reading it "
                              f"failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}", ExitCode.FAILED)
    return {"stdout": str(output.get("stdout") or ""), "stderr": str(output.get("stderr") or "")}


def backup(inventory: Path, verify_restore: bool, command: str,
           progress: ProgressCallback | None = None, rollback_point: bool = False) -> dict[str, Any]:
    """The live database now; with `rollback_point`, the last successful release's rollback
    point instead (its backup, when the one after go-live failed: accept needs it)."""
    extravars = {"ella_database_backup_verify_restore": verify_restore, "ella_backup_rollback_point": rollback_point,
                 **audit.run_metadata(command)}
    result = run_playbook("backup.yml", inventory, extravars=extravars, progress=progress)
    record = result.published.get("ella_audit_record")
    if not result.ok:
        raise EllaDeployError(f"backup: {result.error_summary()}",
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    return dict(record or {})


# ELLA's logs (in ella-prod/logs, its /logs) and the outer supervisord's of each host.
LOG_FILES = {
    "api": "api.log",                    # the API: gunicorn's access lines and ELLA's own log
    "nginx": "nginx.access",             # every request at the front door, with its status
    "polling": "polling.log",
    "watcher": "analysis-watcher.log",
    "supervisor": "supervisor.log",      # ELLA's own supervisord inside the image
    "ella": "ella-{host}.log",           # what the outer supervisor program printed on HOST
    "supervisord": "supervisord-{host}.log",
}
LOG_PROGRAMS = tuple(LOG_FILES)
DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_since(text: str) -> datetime.timedelta:
    match = DURATION.match(text or "")
    if not match:
        raise EllaDeployError(f"logs: --since {text!r}: use a number and s, m, h or d, e.g. 10m", ExitCode.USAGE)
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return datetime.timedelta(**{unit: int(match.group(1))})


def log_file(program: str, host: str) -> str:
    """A log's name in ELLA's log directory."""
    return LOG_FILES[program].format(host=host)


def logs(inventory: Path, host: str, program: str, lines: int,
         since: datetime.timedelta | None = None) -> dict[str, Any]:
    """The last lines of a log (of the last `since`, judged on the host in its own time)."""
    extravars: dict[str, Any] = {"ella_logs_file": log_file(program, host), "ella_logs_lines": lines,
                                 "ella_logs_host": host,
                                 "ella_logs_since_seconds": int(since.total_seconds()) if since else 0}
    result = run_playbook("logs.yml", inventory, extravars=extravars)
    published = result.published.get("ella_logs")
    if not result.ok or published is None:
        raise EllaDeployError(f"logs: {result.error_summary()}", ExitCode.FAILED)
    return dict(published)


def db_task(inventory: Path, script_path: Path, commit: bool, command: str,
            progress: ProgressCallback | None = None,
            confirm: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """A data-fix script in the one transaction ella-deploy owns: rolled back, or with
    `commit` (reviewed, committed in git, backed up first) committed. `confirm` is called
    with the task before a commit runs, after its review was checked (it raises to stop it)."""
    import os
    import tempfile

    from ella_deploy import dbtask, sqlrun

    script = dbtask.load(script_path)
    review = dbtask.review(script) if commit else None
    task = {
        "label": script.label, "sha256": script.sha256, "commit": commit,
        "statements": dbtask.statements_of(script),
        "review": None if review is None else {"commit": review.commit, "reviewers": list(review.reviewers),
                                               "authors": list(review.authors)},
    }
    if commit and confirm is not None:
        confirm(task)
    handle, wrapped = tempfile.mkstemp(prefix="ella-task-", suffix=".sql")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(dbtask.psql_input(script, commit))
        extravars = {"ella_db_task": task, "ella_db_task_file": wrapped,
                     "ella_db_task_output_filter": sqlrun.OUTPUT_FILTER, **audit.run_metadata(command)}
        result = run_playbook("db_task.yml", inventory, extravars=extravars, progress=progress)
    finally:
        os.unlink(wrapped)
    published = result.published.get("ella_db_task_results") or {}
    outcome = {"task": script.label, "sha256": script.sha256, "mode": "commit" if commit else "dry-run",
               "review": task["review"], **published}
    if not result.ok and commit and published.get("ok"):
        # The transaction committed; what failed came after it (the audit record, the lock).
        raise EllaDeployError(f"db-task {script.label}: COMMITTED, but then: {result.error_summary()}; "
                              "do not run it again", ExitCode.FAILED)
    if not result.ok or not published.get("ok"):
        statements = published.get("statements") or []
        failed = next((s for s in statements if s.get("tag") is None), None)
        where = f"statement {failed['number']} (line {failed['line']}): " if failed else ""
        # psql names its input file and line ("psql:/tmp/ella-task-x.sql:9: ERROR: ..."): ours, not the script's.
        error = [re.sub(r"^psql:[^:]*:\d+: ", "", line) for line in (published.get("error") or "").strip().splitlines()]
        reason = where + (error[0] if error else result.error_summary())
        raise EllaDeployError(f"db-task {script.label}: {reason}; nothing was changed",
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    return outcome


def render_db_task(outcome: dict[str, Any]) -> str:
    lines = [f"{outcome['task']} (sha256 {outcome['sha256'][:12]}…)"]
    total = 0.0
    for statement in outcome.get("statements") or []:
        rows = "" if statement.get("rows") is None else f"{statement['rows']} rows"
        ms = statement.get("ms") or 0.0
        total += ms
        lines.append(f"  #{statement['number']:<3} line {statement['line']:<5} {statement.get('tag') or '?':<14}"
                     f"{rows:>12} {ms:>10.1f} ms  {statement['summary']}")
    if outcome["mode"] == "commit":
        backup = (outcome.get("backup") or {}).get("path")
        lines.append(f"committed ({total:.1f} ms); backup before it: {backup}")
    else:
        lines.append(f"dry run: rolled back, nothing changed ({total:.1f} ms). "
                     "Commit the reviewed task and rerun with --commit to apply it.")
    return "\n".join(lines)
