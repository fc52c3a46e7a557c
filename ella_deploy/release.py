"""`ella-deploy release`: plan, confirm, run ansible/playbooks/release.yml, report.

The safety (pre-flight, lock, guard, backup, rollback, audit) lives in the playbook; this
module adds what a terminal needs: early validation, the plan, confirmation, a summary.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ella_deploy import audit, paths, versions
from ella_deploy.errors import EllaDeployError, ExitCode
from ella_deploy.runner import ProgressCallback, run_playbook


@dataclass(frozen=True)
class ReleaseOptions:
    request: str
    allow_downgrade: bool = False
    verify_backup: bool = False
    broadcast: bool = True
    break_lock: str = ""
    fenced_hosts: tuple[str, ...] = ()
    # Send the acceptance notice to the testers once ELLA is healthy.
    notify: bool = False
    # Versions released successfully on the environment's staging (None: it names none).
    staging_verified: tuple[str, ...] | None = None
    staging_error: str = ""
    skip_staging_check: bool = False
    # The operator's reason to release although the rollback target's image is not usable.
    without_rollback_image: str = ""
    # The database server's free space as the operator read it (where it cannot be measured).
    db_server_free: str = ""

    @property
    def db_server_free_bytes(self) -> int:
        return parse_size(self.db_server_free) if self.db_server_free else 0


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'120G', '500M', '1.5T', '4096' (bytes): powers of 1024, as df -h shows them."""
    match = SIZE.match(text)
    if not match:
        raise EllaDeployError(f"release: --db-server-free {text!r} is not a size: use e.g. 120G or 500M",
                              ExitCode.USAGE)
    return int(float(match.group(1)) * 1024 ** "BKMGT".index((match.group(2) or "B").upper()))


@dataclass
class ReleaseOutcome:
    plan: dict[str, Any]
    record: dict[str, Any] | None = None
    nothing_to_do: bool = False
    errors: list[str] = field(default_factory=list)
    refused: bool = False
    interrupted: bool = False
    recovery: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@contextlib.contextmanager
def interruptible(ignore: bool = False) -> Iterator[threading.Event]:
    """Ctrl-C sets an event instead of raising (the run in progress reads it and stops);
    with `ignore`, Ctrl-C only says that the recovery goes on."""
    event = threading.Event()

    def handler(_signum: int, _frame: Any) -> None:
        if ignore:
            print("ella-deploy: recovery in progress; it finishes on its own", file=sys.stderr)
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def validate(options: ReleaseOptions) -> None:
    """Bad input fails here, before any host is touched."""
    if not versions.is_request(options.request):
        raise EllaDeployError(
            f"release: {options.request!r} is not a version: use MAJOR.MINOR.PATCH, 2.x or 2.3.x", ExitCode.USAGE
        )
    if options.db_server_free:
        parse_size(options.db_server_free)  # bad input fails here, before any host


def _extravars(options: ReleaseOptions, command: str) -> dict[str, Any]:
    return {"ella_release_request": options.request, **audit.run_metadata(command, options.fenced_hosts),
            "ella_deploy_staging_verified": list(options.staging_verified or ()),
            "ella_deploy_staging_error": options.staging_error,
            "ella_deploy_skip_staging_check": options.skip_staging_check,
            "ella_deploy_without_rollback_image": options.without_rollback_image,
            "ella_deploy_db_server_free": options.db_server_free_bytes}


def staging_verified(inventory: Path, skip: bool,
                     progress: ProgressCallback | None = None) -> tuple[tuple[str, ...] | None, str]:
    """The versions released successfully on the staging the inventory names (read from
    staging's audit log; None when it names none or the check is skipped), and why it could
    not be read. Unreadable counts as nothing verified: a hotfix goes on, a major or minor
    release is refused by the pre-flight, which says why."""
    from ella_deploy import history

    name = paths.inventory_setting(inventory, "ella_staging_inventory")
    if not name or skip:
        return None, ""
    if progress:
        progress(f"Read the releases verified on {name}")
    staging = paths.resolve_inventory(str(name))
    try:
        records = history.fetch(staging)
    except EllaDeployError as error:
        return (), f"{name}'s audit log could not be read: {error.message}"
    # Only a log as its writers left it vouches for a release (a torn last line is skipped).
    chain = history.chain(staging)
    if not chain["intact"]:
        return (), f"{name}'s audit log is {audit.describe_chain(chain)}: no release on it counts"
    return tuple(sorted({str(r.get("to_version")) for r in records
                         if r.get("kind") == "release" and r.get("outcome") == "success"})), ""


def plan(inventory: Path, options: ReleaseOptions, progress: ProgressCallback | None = None) -> dict[str, Any]:
    validate(options)
    result = run_playbook("release_plan.yml", inventory, extravars=_extravars(options, "release --check"),
                          progress=progress)
    if not result.ok:
        raise EllaDeployError(f"release plan: {result.error_summary()}",
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    return dict(result.published["ella_release_plan"])


def plan_problems(the_plan: dict[str, Any], options: ReleaseOptions) -> list[str]:
    """What the playbook's pre-flight would refuse, said before asking for confirmation."""
    problems = []
    if the_plan.get("checksum_problem"):
        problems.append(f"{Path(the_plan['image']).name}: {the_plan['checksum_problem']}")
    if the_plan.get("image_problem"):
        problems.append(f"the new image says: {the_plan['image_problem']}")
    if the_plan.get("rollback_image_problem") and not options.without_rollback_image:
        problems.append(f"the rollback target {the_plan['rollback_image_problem']}: a failed release could not go "
                        f"back to {the_plan.get('current_version')} (stage it again, or --without-rollback-image "
                        "REASON, audited)")
    journal = the_plan.get("journal") or {}
    if journal.get("open"):
        problems.append(f"the release of {journal.get('version')} stopped in phase {journal.get('phase')}: "
                        "run `ella-deploy recover` first")
    if (options.staging_verified is not None and the_plan.get("change_kind") in ("major", "minor")
            and the_plan.get("version") not in options.staging_verified):
        problems.append(f"{the_plan.get('version')} is a {the_plan.get('change_kind')} change with no successful "
                        "release on staging on record: release it there first, or --skip-staging-check (audited)"
                        + (f" ({options.staging_error})" if options.staging_error else ""))
    if the_plan.get("change_kind") == "downgrade" and not options.allow_downgrade:
        problems.append(
            f"{the_plan['version']} is older than the running {the_plan['current_version']} (--allow-downgrade)"
        )
    privileges = the_plan.get("db_privileges") or {}
    if privileges and not privileges.get("createdb"):
        problems.append(f"ELLA's login {privileges.get('login')} may not CREATE DATABASE (the rollback point is a "
                        "copy the server makes): ask the DBA for it")
    elif privileges and not privileges.get("owns_database"):
        problems.append(f"ELLA's login {privileges.get('login')} does not own the database (its owner is "
                        f"{privileges.get('owner')}; a rollback renames it): ask the DBA for it")
    if the_plan.get("db_server_free_bytes") in (None, "") and the_plan.get("change_kind") != "none" \
            and not options.db_server_free_bytes:
        problems.append("the database server's free space is not known here, and is never taken as enough: state "
                        "what the site's monitoring shows with --db-server-free SIZE (audited)")
    sessions = the_plan.get("foreign_sessions") or []
    if sessions:
        problems.append(f"{len(sessions)} session(s) of other logins on the database ("
                        + ", ".join(f"{s.get('login')}@{s.get('address')}" for s in sessions[:5])
                        + ") would block the rollback point: close them first")
    if the_plan.get("lock_holder"):
        holder = the_plan["lock_holder"]
        problems.append(f"deploy lock held by {holder.get('operator')} since {holder.get('since')} ({holder.get('command')})")
    return problems


def plan_steps(the_plan: dict[str, Any], options: ReleaseOptions) -> list[tuple[str, str]]:
    """The release's steps in the order they run, each as (key, what the operator reads). The
    keys are what the playbook's marks and the host's journal call the steps (progress.py)."""
    host = the_plan["host"]
    image = Path(the_plan["image"]).name
    steps = [
        ("lock", "take the deploy lock; check again that no other host runs ELLA"),
        ("configure", "render ops/supervisor/supervisor.cfg (every start applies it)"),
        ("stop", f"stop ELLA on {host}  <- downtime starts"),
        ("rollback_point",
         f"rollback point: copy the database on its server ({int(the_plan.get('database_bytes') or 0) / 1e6:.0f} MB, "
         "CREATE DATABASE ... TEMPLATE)"),
        ("switch", f"switch ella-prod/ella.sif -> {image}"
         + (" and ella_config.yml -> the one the new image checked" if the_plan.get("config_changed") else "")),
    ]
    if the_plan.get("migrations_pending"):
        steps.append(("migrate", "migrate: ella-cli database upgrade head "
                                 f"({the_plan.get('revision')} -> {the_plan.get('target_revision')})"))
    if the_plan.get("fixtures_changed"):
        steps.append(("fixtures", f"update {', '.join(the_plan['fixtures_changed'])} with ella-cli"))
    steps += [
        ("start", f"check again that no other host runs ELLA; start ELLA on {host}; health gate: its programs "
                  f"RUNNING, /api/v1/config/ answers, it runs {image}  <- downtime ends, the release is live"),
    ]
    if options.broadcast:
        steps.append(("broadcast", "post the acceptance-test broadcast"))
    steps.append(("backup", "dump the rollback point (the procedure's backup), read it back completely"
                            + (", restore it into a scratch database" if options.verify_backup else "")))
    steps.append(("record", "write the audit record; release the lock (a failure before go-live rolls back; "
                            "after it, nothing restores data)"))
    return steps


def steps_of(the_plan: dict[str, Any], options: ReleaseOptions) -> list[str]:
    """The release's steps as the operator reads them, in the order they run."""
    return [text for _key, text in plan_steps(the_plan, options)]


def render_plan(the_plan: dict[str, Any], options: ReleaseOptions) -> str:
    lines = [
        f"environment     {the_plan['environment']} (host {the_plan['host']}; guard: {the_plan['guard']}"
        + (f" on {', '.join(the_plan['active_hosts'])}" if the_plan.get("active_hosts") else "") + ")",
        f"requested       {the_plan['request']} -> {the_plan['version']}",
        f"image           {the_plan['image']}"
        + (f" ({the_plan['checksum_problem']})" if the_plan.get("checksum_problem")
           else f" (sha256 {str(the_plan.get('image_sha256') or '')[:16]}..., {the_plan.get('image_sha256_source')})"),
        f"current         {the_plan.get('current_version') or 'none'}"
        + (f" (rollback target: {the_plan['rollback_image_problem']})" if the_plan.get("rollback_image_problem")
           else f" (rollback target {Path(str(the_plan['rollback_image']['path'])).name}, sha256 "
                f"{str(the_plan['rollback_image'].get('sha256') or '')[:16]}...)" if the_plan.get("rollback_image")
           else ""),
        f"change          {the_plan['change_kind']}" + ("  (hotfix)" if the_plan["change_kind"] == "patch" else ""),
        "migrations      "
        + ("pending" if the_plan.get("migrations_pending") else "none pending" if the_plan.get("migrations_pending") is False
           else "unknown (image not checked)"),
        f"fixtures        {', '.join(the_plan.get('fixtures_changed') or []) or 'unchanged'}",
        f"configuration   {'changes (checked by the new image)' if the_plan.get('config_changed') else 'unchanged'}",
        f"database        {int(the_plan.get('database_bytes') or 0) / 1e6:.1f} MB; "
        f"{int(the_plan.get('free_bytes') or 0) / 1e9:.1f} GB free for its backup; "
        + (f"{int(the_plan['db_server_free_bytes']) / 1e9:.1f} GB free on its server"
           if the_plan.get("db_server_free_bytes") not in (None, "") else "its server's free space not known here"),
    ]
    if the_plan["change_kind"] == "none":
        lines.append("\nnothing to do: this version is already live")
        return "\n".join(lines)
    lines.append("\nsteps:")
    lines += [f"  {number}. {step}" for number, step in enumerate(steps_of(the_plan, options), start=1)]
    rehearsal = the_plan.get("rehearsal")
    if rehearsal:
        when = rehearsal.get("recorded") or rehearsal.get("finished")
        lines.append(f"\nlast rehearsal  {rehearsal['outcome']} ({when}): rollback point "
                     f"{float(rehearsal.get('rollback_point_seconds') or 0):.1f}s, migrate "
                     f"{float(rehearsal['migration_seconds']):.1f}s (dump {int(rehearsal.get('dump_bytes') or 0) / 1e6:.1f} MB)")
    elif the_plan["change_kind"] != "none":
        lines.append(f"\nlast rehearsal  none (ella-deploy rehearse {the_plan['version']})")
    problems = plan_problems(the_plan, options)
    if problems:
        lines.append("\nrefused by pre-flight:")
        lines += [f"  ! {problem}" for problem in problems]
    return "\n".join(lines)


def confirm(the_plan: dict[str, Any], inventory: Path, ask: Callable[[str], str] | None = None) -> None:
    """Asked as every command that stops ELLA asks (confirm.require): not on the sandbox."""
    from ella_deploy import confirm as consent

    consent.require("release", inventory, f"Release ELLA {the_plan['version']} on {the_plan['environment']}?",
                    environment=the_plan["environment"], ask=ask or consent.ask_on_stderr)


def execute(
    inventory: Path,
    options: ReleaseOptions,
    version: str,
    command: str,
    progress: ProgressCallback | None = None,
) -> ReleaseOutcome:
    extravars = _extravars(options, command) | {
        "ella_release_request": version,
        "ella_release_allow_downgrade": options.allow_downgrade,
        "ella_release_broadcast": options.broadcast,
        "ella_release_break_lock": options.break_lock,
        "ella_database_backup_verify_restore": options.verify_backup,
        "ella_release_notify": options.notify,
    }
    with interruptible() as interrupted:
        result = run_playbook("release.yml", inventory, extravars=extravars, progress=progress,
                              cancel=interrupted.is_set)
    record = result.published.get("ella_audit_record")
    the_plan = dict(result.published.get("ella_release_plan") or {})
    outcome = ReleaseOutcome(plan=the_plan, record=record, refused=result.refused)
    if result.canceled:
        # Ctrl-C: the host's window stops at its next step boundary; recover (with this
        # invocation's lock token) rolls back what never served, or finishes what went live.
        from ella_deploy import control

        if progress:
            progress("Interrupted: the host stops after its current step; recovering (do not interrupt again)")
        with interruptible(ignore=True):
            outcome.recovery = control.recover(inventory, command + " (recover after interrupt)",
                                               options.fenced_hosts, progress, cancel=True)
        outcome.errors.append("interrupted by the operator; " + control.render_recovery(outcome.recovery)
                              .replace("\n", "; "))
        outcome.interrupted = True
        return outcome
    if not result.ok:
        outcome.errors.append(result.error_summary())
    elif record is None:
        outcome.nothing_to_do = True
    return outcome


def render_outcome(outcome: ReleaseOutcome) -> str:
    if outcome.interrupted:
        from ella_deploy import control

        return "release interrupted by the operator\n" + control.render_recovery(outcome.recovery or {})
    record = outcome.record
    if record is None:
        if outcome.nothing_to_do:
            return f"nothing to do: ELLA {outcome.plan.get('version')} is already live"
        return "release refused before anything changed"
    lines = [
        f"release {record.get('from_version') or outcome.plan.get('current_version') or 'none'} -> "
        f"{record.get('to_version') or outcome.plan.get('version')} on {record.get('environment')} "
        f"({record.get('host')}): {str(record.get('outcome')).upper()}",
    ]
    if record.get("failure") and not record.get("rollback"):
        lines.append(f"failed: {record['failure'].get('task')}: {record['failure'].get('message')}")
    if record.get("downtime_seconds") is not None:
        lines.append(f"downtime {record['downtime_seconds']:.1f}s")
    for step in record.get("steps", []):
        lines.append(f"  {step['name']:<16}{step['seconds']:>8.1f}s" + (f"  {step['state']}" if step.get("state") else ""))
    if record.get("rollback"):
        lines.append(f"rollback: {record['rollback'].get('summary') or record['rollback']}")
    for error in record.get("after_live_errors") or []:
        lines.append(f"after go-live (the release stands, nothing was restored): {error['task']}: {error['message']}")
    notice = record.get("notice")
    if notice:
        lines.append(f"{notice['kind']} notice " + ("sent" if notice.get("sent") else
                                                     f"NOT sent ({notice.get('error')}): send it with `notify`"))
    if record.get("backup"):
        backup = record["backup"]
        if backup.get("sha256"):
            lines.append(f"backup {backup['path']} ({int(backup['size_bytes']) / 1e6:.1f} MB, "
                         f"sha256 {backup['sha256'][:16]}...; {backup.get('verified')})")
        else:  # a release that stopped before its checksum was taken (after ELLA was back)
            lines.append(f"backup {backup['path']}")
    return "\n".join(lines)


def accept(inventory: Path, command: str, progress: ProgressCallback | None = None,
           notify: bool = False, test_sheet: dict[str, Any] | None = None) -> dict[str, Any]:
    """The acceptance test passed: take down the release's broadcast, audited; with
    `notify`, tell the users (a failed send is reported, never fatal). `test_sheet`: what
    the audit record keeps of the acceptance sheet (sheets.judge_for_accept)."""
    extravars = {**audit.run_metadata(command), "ella_release_notify": notify,
                 "ella_deploy_test_sheet": test_sheet}
    result = run_playbook("accept.yml", inventory, extravars=extravars, progress=progress)
    if not result.ok:
        raise EllaDeployError(f"accept: {result.error_summary()}",
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    return dict(result.published["ella_audit_record"])


# ---- Rehearsal: the downtime known before the window ----------------------------------------

# Seconds assumed for the steps a rehearsal does not measure when no release is on record.
ASSUMED_STEPS = {"stop": 5.0, "switch": 0.1, "fixtures": 3.0, "guard_start": 3.0, "start": 12.0}
DOWNTIME_ORDER = ["stop", "rollback_point", "switch", "migrate", "fixtures", "guard_start", "start"]


def predict_downtime(rehearsal: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Downtime = stop + rollback point + switch + migrate + fixtures + guard + start: the rollback
    point and the migration as the rehearsal measured them, the other steps as the last
    successful release took them."""
    last = next((r for r in reversed(records) if r.get("kind") == "release" and r.get("outcome") == "success"
                 and r.get("steps")), None)
    taken = {step["name"]: float(step["seconds"]) for step in (last or {}).get("steps", [])}
    steps = {name: round(taken.get(name, assumed), 2) for name, assumed in ASSUMED_STEPS.items()}
    steps["rollback_point"] = float(rehearsal["rollback_point_seconds"])
    steps["migrate"] = float(rehearsal["migration_seconds"])
    return {"seconds": round(sum(steps[name] for name in DOWNTIME_ORDER), 1),
            "steps": {name: steps[name] for name in DOWNTIME_ORDER},
            "from": "this rehearsal (rollback point, migrate) and " + (
                f"the release of {last.get('to_version')} (other steps)" if last else "assumed values (other steps)")}


def rehearse(inventory: Path, version: str, command: str,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    from ella_deploy import history

    if not versions.is_request(version or "") or versions.PATTERN.match(versions.normalize(version or "")):
        raise EllaDeployError(f"rehearse: {version!r} is not a version: use MAJOR.MINOR.PATCH", ExitCode.USAGE)
    extravars = {"ella_release_request": versions.normalize(version), **audit.run_metadata(command)}
    result = run_playbook("rehearse.yml", inventory, extravars=extravars, progress=progress)
    record = result.published.get("ella_audit_record")
    if record is None or record.get("kind") != "rehearsal" or "migration_seconds" not in record:
        raise EllaDeployError(f"rehearse: {result.error_summary()}",
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    outcome = dict(record)
    if outcome.get("migration_ok"):
        outcome["predicted_downtime"] = predict_downtime(outcome, history.fetch(inventory))
    if not result.ok:
        raise EllaDeployError(f"rehearse: {result.error_summary()}", ExitCode.FAILED)
    return outcome


def render_rehearsal(outcome: dict[str, Any]) -> str:
    lines = [f"rehearsal of {outcome['version']} on a copy of {outcome['environment']}'s database "
             f"({int(outcome.get('dump_bytes') or 0) / 1e6:.1f} MB dumped, {outcome.get('rows')} rows): "
             f"{outcome['outcome'].upper()}",
             f"  backup          {float(outcome['backup_seconds']):7.2f}s  (after go-live in a release)",
             f"  restore         {float(outcome['restore_seconds']):7.2f}s  (not part of a release)",
             f"  rollback point  {float(outcome['rollback_point_seconds']):7.2f}s",
             f"  migrate         {float(outcome['migration_seconds']):7.2f}s"]
    predicted = outcome.get("predicted_downtime")
    if predicted:
        lines.append(f"predicted downtime {predicted['seconds']:.1f}s ("
                     + ", ".join(f"{k} {v:.1f}" for k, v in predicted["steps"].items()) + f"; from {predicted['from']})")
    return "\n".join(lines)


def last_rehearsal(records: list[dict[str, Any]], version: str) -> dict[str, Any] | None:
    return next((r for r in reversed(records) if r.get("kind") == "rehearsal" and r.get("version") == version), None)
