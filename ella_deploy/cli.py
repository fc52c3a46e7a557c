"""The `ella-deploy` command line: parse, call one library function, map to an exit code.

Nothing here imports Ansible, so `ella-deploy --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ella_deploy import __version__, audit, console, paths
from ella_deploy.errors import EllaDeployError, ExitCode


# The hidden first word of the shell completion scripts (completion.py): never a command.
COMPLETE = "__complete"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line with our usage exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("ella-deploy").strip()
        raise EllaDeployError(f"{command}: {message}" if command else message, ExitCode.USAGE)


def _add_peer_fenced(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer-fenced", metavar="HOST", action="append", default=[],
                        help="HOST is unreachable and its VM is off: count it as stopped (audited)")


def _add_break_lock(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--break-lock", metavar="REASON", default="",
                        help="break a deploy lock whose holder is gone (no heartbeat within its lease); audited")


# ---- Global options: accepted before the command, after it, and after its own arguments ----

# The -v count of each level of the command line (ella-deploy -v, COMMAND -v, ACTION -v):
# argparse parses a subcommand into a namespace of its own, so each level counts apart.
VERBOSITY_DESTS = ("verbose", "verbose_1", "verbose_2")


def _add_global_options(parser: argparse.ArgumentParser, depth: int) -> None:
    """One definition for every level. Below the top they default to nothing (SUPPRESS), so
    an option given after the command overrides the one before it, and one not given there
    leaves it alone; the same choices and checks apply at every level."""
    def default(value: Any) -> Any:
        return value if depth == 0 else argparse.SUPPRESS

    where = parser if depth == 0 else parser.add_argument_group("global options (before or after the command)")
    where.add_argument("-i", "--inventory", default=default(paths.DEFAULT_INVENTORY),
                       help="prod, staging, sandbox, sandbox-staging, or a path (default: sandbox)")
    where.add_argument("--output", choices=("text", "json", "nagios"), default=default("text"),
                       help="output format (nagios: `check` only, one line and exit 0/1/2/3)")
    where.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks")
    where.add_argument("-v", "--verbose", action="count", dest=VERBOSITY_DESTS[depth], default=default(0),
                       help="show Ansible's task names; Ansible verbosity of the runs (-vvv), kept in the "
                            "run's artifacts")
    where.add_argument("--vault-password-file", metavar="FILE", default=default(None),
                       help="ansible-vault password file of the inventory's secrets (prod, staging)")


def _spread_global_options(parser: argparse.ArgumentParser, depth: int = 0) -> None:
    for action in parser._actions:  # noqa: SLF001 - argparse exposes subparsers only this way
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in {id(p): p for p in action.choices.values()}.values():
                _add_global_options(sub, depth + 1)
                _spread_global_options(sub, depth + 1)


def _add_yes(parser: argparse.ArgumentParser, default: Any = False) -> None:
    parser.add_argument("--yes", action="store_true", default=default,
                        help="do not ask for confirmation (CI); outside the sandbox, without a terminal, "
                             "the command is refused unless given")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ella-deploy",
        description="Deploy and operate ELLA. Without --inventory it acts on the local sandbox.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, depth=0)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    commands.add_parser("check", help="the debug checklist on every host: OK / WARN / CRIT per check "
                                      "(exit 0 ok, 1 warn, 2 crit; --output nagios: 0/1/2/3)")
    commands.add_parser("status", help="what runs where; exit 0 one active, 1 none, 2 conflict or unknown")

    release = commands.add_parser("release", help="release a staged version (backup, switch, migrate, health gate, rollback)")
    release.add_argument("version", help="X.Y.Z, or 2.x / 2.3.x for the newest staged match")
    release.add_argument("--image", metavar="PATH", type=Path,
                         help="stage this ella-release-vX.Y.Z.sif first, then release it")
    release.add_argument("--yes", action="store_true", help="do not ask for confirmation (CI)")
    release.add_argument("--check", action="store_true", help="show the plan; change nothing")
    release.add_argument("--allow-downgrade", action="store_true", help="allow an older version")
    release.add_argument("--verify-backup", action="store_true",
                         help="prove the backup by a full restore into a scratch database")
    release.add_argument("--no-broadcast", action="store_true", help="skip the acceptance-test broadcast")
    release.add_argument("--skip-staging-check", action="store_true",
                         help="release a major/minor version not yet released on staging (audited)")
    release.add_argument("--without-rollback-image", metavar="REASON", default="",
                         help="release although the running version's image (the rollback target) is missing or "
                              "damaged: a failed release could not go back (audited)")
    release.add_argument("--db-server-free", metavar="SIZE", default="",
                         help="the database server's free space as the site's monitoring shows it (e.g. 120G), "
                              "where the inventory cannot measure it: never taken as enough unknown (audited)")
    release.add_argument("--notify", action="store_true",
                         help="e-mail the testers that the acceptance test may start (a failed send fails nothing)")
    release.add_argument("--break-lock", metavar="REASON", default="",
                         help="break a deploy lock whose holder is gone (audited)")
    _add_peer_fenced(release)

    rehearse = commands.add_parser("rehearse", help="migrate a copy of the database with VERSION's image: the "
                                                    "migration time and the predicted downtime, production untouched")
    rehearse.add_argument("rehearse_version", metavar="VERSION", help="X.Y.Z, staged in archive/releases")

    stage = commands.add_parser("stage", help="copy a release image into archive/releases, verified, with its sha256")
    stage.add_argument("image", type=Path, help="path to ella-release-vX.Y.Z.sif (a .sha256 beside it is checked)")
    accept = commands.add_parser("accept", help="acceptance test passed: deactivate the release's broadcast")
    accept.add_argument("--notify", action="store_true",
                        help="e-mail the users that the new version is in use (a failed send fails nothing)")
    accept.add_argument("--sheet", metavar="PATH", type=Path,
                        help="the filled-in acceptance sheet (.xlsx): refused while a test is not passed and signed")
    accept.add_argument("--force", action="store_true",
                        help="with --sheet: accept although tests are not passed (audited)")
    history = commands.add_parser("history", help="the audit log of the environment")
    history.add_argument("--verify", action="store_true",
                         help="check the log's chain (each record names the line before it): exit 2 if a line "
                              "was edited, removed or inserted")
    records = commands.add_parser("records", help="change records (Endringskontroll) of non-hotfix releases: "
                                                  "list, or write VERSION's again")
    records.add_argument("record_version", nargs="?", metavar="VERSION", help="X.Y.Z to (re)write")
    records.add_argument("--force", action="store_true", help="overwrite a .docx or test sheet edited by hand")

    recover = commands.add_parser("recover", help="after an interrupted run: say what production is in, then "
                                                  "finish or roll back the release, under the lock")
    recover.add_argument("--keep-new", metavar="REASON", default="",
                         help="keep the new version of the open release (it must be in place: switched and "
                              "migrated) and start it, instead of rolling back what never served (audited)")
    _add_peer_fenced(recover)
    _add_yes(recover)
    start = commands.add_parser("start", help="start ELLA on one host, if no other host runs it")
    start.add_argument("--host", help="default: the inventory's primary")
    _add_peer_fenced(start)
    _add_break_lock(start)
    _add_yes(start)
    stop = commands.add_parser("stop", help="stop ELLA, supervised or not (default: on every host)")
    stop_where = stop.add_mutually_exclusive_group()
    stop_where.add_argument("--host", help="only this host")
    stop_where.add_argument("--all", action="store_true", help="every host of the environment (the default)")
    _add_break_lock(stop)
    _add_yes(stop)
    restart = commands.add_parser("restart", help="stop, then start on the same host")
    restart.add_argument("--host", help="default: the inventory's primary")
    _add_peer_fenced(restart)
    _add_break_lock(restart)
    _add_yes(restart)
    failover = commands.add_parser("failover", help="move ELLA from the host that runs it to another")
    failover.add_argument("--to", metavar="HOST", help="default: the other host")
    _add_peer_fenced(failover)
    _add_break_lock(failover)
    _add_yes(failover)
    failback = commands.add_parser("failback", help="move ELLA back to the primary")
    _add_peer_fenced(failback)
    _add_break_lock(failback)
    _add_yes(failback)

    cli = commands.add_parser("cli", help="run ella-cli in the live image on the active host: cli -- ARGS")
    _add_yes(cli)
    cli.add_argument("cli_args", nargs=argparse.REMAINDER, metavar="-- ARGS", help="ella-cli arguments")
    broadcast = commands.add_parser("broadcast", help="ELLA's banner messages: new TEXT | list | deactivate ID")
    broadcast_actions = broadcast.add_subparsers(dest="broadcast_action", metavar="ACTION", parser_class=_Parser)
    broadcast_actions.required = True
    _add_yes(broadcast)
    broadcast_new = broadcast_actions.add_parser("new", help="post a broadcast")
    broadcast_new.add_argument("text")
    _add_yes(broadcast_new, default=argparse.SUPPRESS)
    broadcast_actions.add_parser("list", help="every broadcast")
    broadcast_deactivate = broadcast_actions.add_parser("deactivate", help="take a broadcast down")
    broadcast_deactivate.add_argument("id", type=int)
    _add_yes(broadcast_deactivate, default=argparse.SUPPRESS)
    backup = commands.add_parser("backup", help="back up the database now (pg_dump, verified, audited)")
    backup.add_argument("--verify-restore", action="store_true",
                        help="also restore it into a scratch database (dropped afterwards)")
    backup.add_argument("--rollback-point", action="store_true",
                        help="back up the last release's rollback point (the data before it) as that release's "
                             "backup, when the one after go-live failed; accept needs it")

    logs = commands.add_parser("logs", help="the last lines of ELLA's logs (default: api.log on the active host)")
    logs.add_argument("--host", help="default: the host that runs ELLA, else the primary")
    logs.add_argument("--program", choices=("api", "nginx", "polling", "watcher", "supervisor", "ella", "supervisord"),
                      default="api", help="api.log (default), nginx.access, polling.log, analysis-watcher.log, "
                                          "ELLA's supervisor.log, the program's output, the outer supervisord's log")
    logs.add_argument("--since", metavar="DURATION", help="only the last 10m, 2h, 1d, ...")
    logs.add_argument("--lines", type=int, default=200, help="lines read from the end (default %(default)s)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (tail -F) until Ctrl-C")

    db_task = commands.add_parser(
        "db-task", help="run a data fix tasks/YYYYMMDD_name/x.sql in a transaction: rolled back unless --commit")
    db_task.add_argument("script", type=Path, help="tasks/YYYYMMDD_name/name_of_task.sql")
    db_task.add_argument("--commit", action="store_true",
                         help="apply it: only committed unchanged in git with a Reviewed-by: trailer of "
                              "another person; backs up first")
    _add_yes(db_task)

    notify = commands.add_parser("notify", help="compose a notice by e-mail (printed; sent only with --send)")
    notify.add_argument("kind", choices=("downtime", "release", "acceptance", "done", "down"),
                        help="downtime (planned), release (upcoming), acceptance (to testers), done, down (unplanned)")
    notify.add_argument("--at", metavar="TIME", default="", help='when, as the users read it: "fredag 28.11 kl. 16-18"')
    notify.add_argument("--version", dest="notice_version", metavar="X.Y.Z", default="", help="the ELLA version")
    notify.add_argument("--send", action="store_true", help="send it (default: print it exactly as it would be sent)")
    report_tsd = commands.add_parser("report-tsd", help="compose the incident mail to TSD with check and status attached")
    report_tsd.add_argument("summary", help="what is wrong, in one line")
    report_tsd.add_argument("--at", metavar="TIME", default="", help="since when")
    report_tsd.add_argument("--send", action="store_true", help="send it (default: print it)")

    psql = commands.add_parser("psql", help="psql on ELLA's database as the read-only login (writes are refused)")
    psql.add_argument("--host", help="ELLA host to run psql on (default: the primary, else one that answers)")
    psql.add_argument("-c", "--command", dest="sql", metavar="SQL", help="run SQL, print the result, exit")

    sandbox = commands.add_parser("sandbox", help="the local copy of the site in podman containers")
    actions = sandbox.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    up = actions.add_parser("up", help="create or heal the sandbox (idempotent)")
    up.add_argument("--take-over", action="store_true",
                    help="remove a sandbox another checkout (state directory) made, then create this one")
    down = actions.add_parser("down", help="remove every container, network and file the sandbox made")
    down.add_argument("--purge-image", action="store_true", help="also remove the cached host image")
    actions.add_parser("status", help="the sandbox's containers")
    reset = actions.add_parser("reset", help="back to the first release: fresh database, no lock, no backups")
    reset.add_argument("environment", nargs="?", default="sandbox", choices=("sandbox", "sandbox-staging"))

    completion = commands.add_parser(
        "completion", help="shell completion: eval \"$(ella-deploy completion bash)\" (or zsh); "
                           "`completion versions [--refresh]`: the staged versions it offers")
    completion.add_argument("what", choices=("bash", "zsh", "versions"),
                            help="bash or zsh: print the script; versions: the staged versions known here")
    completion.add_argument("--refresh", action="store_true",
                            help="versions: ask the inventory's host which versions are staged (the only "
                                 "completion that contacts a host)")
    _spread_global_options(parser)
    return parser


def _progress(output: str) -> Any:
    """The command's steps on stderr while it runs (console.py); None for --output json."""
    return console.task_progress(output)


def _emit(output: str, text: str, data: Any, kind: str | None = None) -> None:
    """The result on stdout, after the progress display ended. `kind`: check or status (coloured)."""
    console.close_all()
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        console.print_result(text, kind)


def cmd_check(args: argparse.Namespace) -> int:
    from ella_deploy import check

    inventory = paths.resolve_inventory(args.inventory)
    nagios = args.output == "nagios"
    try:
        measured = check.measure(inventory)
    except EllaDeployError as error:
        if not nagios:
            raise
        # Monitoring reads one line and the exit code: a check that could not run is UNKNOWN.
        print(f"ELLA UNKNOWN - {error.message}")
        return 3
    checks = check.evaluate(measured)
    if nagios:
        print(check.render_nagios(checks))
    else:
        _emit(args.output, check.render_text(checks, measured), check.as_dict(checks, measured), kind="check")
    return check.exit_code(checks, nagios)


def cmd_status(args: argparse.Namespace) -> int:
    from ella_deploy import status

    inventory = paths.resolve_inventory(args.inventory)
    result = status.collect(inventory, progress=None)
    _emit(args.output, status.render(result), result.as_dict(), kind="status")
    return result.exit_code


def cmd_release(args: argparse.Namespace) -> int:
    from ella_deploy import release

    options = release.ReleaseOptions(
        request=args.version,
        allow_downgrade=args.allow_downgrade,
        verify_backup=args.verify_backup,
        broadcast=not args.no_broadcast,
        break_lock=args.break_lock,
        fenced_hosts=tuple(args.peer_fenced),
        notify=args.notify,
        skip_staging_check=args.skip_staging_check,
        without_rollback_image=args.without_rollback_image.strip(),
        db_server_free=args.db_server_free.strip(),
    )
    release.validate(options)
    inventory = paths.resolve_inventory(args.inventory)
    progress = _progress(args.output)
    import dataclasses

    verified, staging_error = release.staging_verified(inventory, options.skip_staging_check, progress)
    options = dataclasses.replace(options, staging_verified=verified, staging_error=staging_error)
    if args.image:
        from ella_deploy import stage

        version = stage.validate(args.image)
        if options.request != version:
            raise EllaDeployError(f"release: --image is {version}, the command asks for {options.request}",
                                  ExitCode.USAGE)
        stage.stage(inventory, args.image, progress)
    command = audit.sanitized_command(args.argv)
    if args.yes and not args.check:
        # No one to show the plan to before it runs: release.yml plans and checks itself,
        # so a separate planning pass would only double the time.
        outcome, steps = _execute_release(args, inventory, options, options.request, command, None)
    else:
        the_plan = release.plan(inventory, options, progress)
        _remember_staged(inventory, progress)
        if the_plan.get("change_kind") != "none":
            from ella_deploy import history

            the_plan["rehearsal"] = release.last_rehearsal(history.fetch(inventory), the_plan["version"])
        problems = release.plan_problems(the_plan, options)
        if args.check or the_plan["change_kind"] == "none":
            _emit(args.output, release.render_plan(the_plan, options), {"plan": the_plan, "problems": problems})
            return ExitCode.REFUSED if problems and the_plan["change_kind"] != "none" else ExitCode.OK
        if problems:
            raise EllaDeployError(f"release refused before anything changed: {'; '.join(problems)}",
                                  ExitCode.REFUSED)
        if args.output == "text":
            console.close_all()
            print(release.render_plan(the_plan, options), file=sys.stderr)
        release.confirm(the_plan, inventory)
        outcome, steps = _execute_release(args, inventory, options, the_plan["version"], command, the_plan)
    the_plan = outcome.plan
    summary = {
        "version": the_plan.get("version"),
        # An interrupted run publishes no record of its own: what recover did is the outcome.
        "outcome": (outcome.record or {}).get("outcome") or (
            "interrupted" if outcome.interrupted else "nothing_to_do" if outcome.nothing_to_do else "refused"),
        "downtime_seconds": (outcome.record or {}).get("downtime_seconds"),
        "record": outcome.record,
        "plan": the_plan,
        "errors": outcome.errors,
        "recovery": outcome.recovery,
        "progress": steps.as_dict(),
    }
    if outcome.ok and outcome.record:
        summary["change_record"] = _change_record(inventory, outcome.record.get("to_version"), progress,
                                                  audit_records=[outcome.record])
        summary["test_sheet"] = _test_sheet(inventory, outcome.record.get("to_version"), audit_records=[outcome.record])
    _emit(args.output, release.render_outcome(outcome)
          + (f"\nchange record: {summary['change_record']['docx']}" if summary.get("change_record") else "")
          + (f"\ntest sheet: {summary['test_sheet']['path']}" if summary.get("test_sheet") else ""), summary)
    if outcome.interrupted:
        raise EllaDeployError("release: " + "; ".join(outcome.errors), ExitCode.INTERRUPTED)
    if not outcome.ok:
        raise EllaDeployError("release: " + "; ".join(outcome.errors),
                              ExitCode.REFUSED if outcome.refused else ExitCode.FAILED)
    return ExitCode.OK


def _execute_release(args: argparse.Namespace, inventory: Path, options: Any, version: str, command: str,
                     the_plan: dict[str, Any] | None) -> tuple[Any, Any]:
    """release.yml with its progress by step (progress.ReleaseSteps), the host's journal read
    live while it runs when progress is shown."""
    from ella_deploy import confirm, release
    from ella_deploy import progress as steps_model

    def steps_of(plan: dict[str, Any]) -> list[tuple[str, str]]:
        return release.plan_steps(plan, options)

    environment = (the_plan or {}).get("environment") or confirm.environment_name(inventory)
    steps = steps_model.ReleaseSteps(steps_of(the_plan) if the_plan else None, plan_steps=steps_of,
                                     expected=steps_model.rehearsal_expectations((the_plan or {}).get("rehearsal")),
                                     title=f"release {(the_plan or {}).get('version') or version} on {environment}")
    console.show(steps, args.output)
    follower, why = _follow_journal(inventory, steps) if args.output == "text" else (None, "")
    if why:
        steps.note(why)
    try:
        outcome = release.execute(inventory, options, version, command, steps)
    finally:
        if follower is not None:
            follower.stop()
    console.close_all(failed=not outcome.ok)
    _remember_staged(inventory, steps)
    return outcome, steps


def _follow_journal(inventory: Path, steps: Any) -> tuple[Any, str]:
    """Read deploy/journal.json on the shared storage every second while the release runs (one
    SSH session, as `logs --follow` opens it); a release never depends on it."""
    from ella_deploy import progress as steps_model
    from ella_deploy import remote

    try:
        connection = remote.connect(inventory, None, "release")
    except EllaDeployError as error:
        return None, f"the host's journal is not followed live ({error.message}); its steps show as the window returns"
    return steps_model.JournalFollower(remote.RemoteJournal.over_ssh(connection), steps).start(), ""


def _remember_staged(inventory: Path, steps: Any) -> None:
    """What a run saw in archive/releases, for shell completion of versions."""
    staged = getattr(steps, "staged", None)
    if staged is not None:
        from ella_deploy import completion

        completion.remember_versions(inventory, staged)


def cmd_rehearse(args: argparse.Namespace) -> int:
    from ella_deploy import release

    outcome = release.rehearse(paths.resolve_inventory(args.inventory), args.rehearse_version,
                               audit.sanitized_command(args.argv), _progress(args.output))
    _emit(args.output, release.render_rehearsal(outcome), outcome)
    return ExitCode.OK


def cmd_stage(args: argparse.Namespace) -> int:
    from ella_deploy import stage

    stage.validate(args.image)
    staged = stage.stage(paths.resolve_inventory(args.inventory), args.image, _progress(args.output))
    from ella_deploy import completion

    completion.remember_versions(paths.resolve_inventory(args.inventory), [staged["name"]], replace=False)
    text = f"{staged['name']} " + ("staged" if staged["copied"] else "already staged (identical), nothing copied")
    _emit(args.output, text + f" (sha256 {staged['sha256']})", staged)
    return ExitCode.OK


def cmd_accept(args: argparse.Namespace) -> int:
    from ella_deploy import release

    test_sheet = None
    if args.sheet:
        from ella_deploy import sheets

        test_sheet = sheets.check_for_accept(paths.resolve_inventory(args.inventory), args.sheet, args.force)
    elif args.force:
        raise EllaDeployError("accept: --force is for a test sheet's tests: give --sheet PATH", ExitCode.USAGE)
    record = release.accept(paths.resolve_inventory(args.inventory), audit.sanitized_command(args.argv),
                            _progress(args.output), notify=args.notify, test_sheet=test_sheet)
    text = f"accepted ELLA {record['version']}: broadcast {record['broadcast_id']} deactivated"
    if test_sheet:
        text += (f"\ntest sheet: {test_sheet['passed']} of {test_sheet['rows']} tests passed"
                 + (" (--force)" if test_sheet["forced"] else "") + f", sha256 {test_sheet['sha256']}")
    change_record = _change_record(paths.resolve_inventory(args.inventory), record.get("version"), None)
    if change_record:
        text += f"\nchange record: {change_record['docx']}" + (
            f" ({change_record['note']})" if change_record["note"] else "")
    notice = record.get("notice")
    if notice:
        text += "; users told" if notice.get("sent") else f"; users NOT told ({notice.get('error')}): use `notify done`"
    _emit(args.output, text, record)
    return ExitCode.OK


def _change_record(inventory: Path, version: str | None, progress: Any,
                   audit_records: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Write the change record after a release (from its own record: `audit_records`) or an
    acceptance; a hotfix has none; a failure is reported, not fatal."""
    from ella_deploy import records

    if not version:
        return None
    if audit_records and all(r.get("change_kind") not in records.NEEDS_RECORD for r in audit_records):
        return None
    try:
        record = records.collect(inventory, version, progress, records=audit_records)
        return records.write(record, records.records_dir(record["environment"]))
    except EllaDeployError as error:
        if "hotfix" in error.message:
            return None
        reason = error.message
    except Exception as error:  # noqa: BLE001 - the release is done; the record must not hide that
        reason = f"{error.__class__.__name__}: {error}"
    print(f"ella-deploy: change record not written: {reason} (retry: ella-deploy records {version})",
          file=sys.stderr)
    return None


def _test_sheet(inventory: Path, version: str | None, force: bool = False,
                audit_records: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Write the verification or acceptance sheet after a release; a failure is reported, not fatal."""
    from ella_deploy import sheets

    if not version:
        return None
    try:
        written = sheets.write_for(inventory, version, force, audit_records)
    except Exception as error:  # noqa: BLE001 - the release is done; the sheet must not hide that
        reason = error.message if isinstance(error, EllaDeployError) else f"{error.__class__.__name__}: {error}"
        print(f"ella-deploy: test sheet not written: {reason} (retry: ella-deploy records {version})", file=sys.stderr)
        return None
    if written and written["note"]:
        print(f"ella-deploy: test sheet {written['path']}: {written['note']}", file=sys.stderr)
    return written


def cmd_records(args: argparse.Namespace) -> int:
    from ella_deploy import records, versions

    inventory = paths.resolve_inventory(args.inventory)
    if args.record_version is None:
        listed = records.listing(inventory)
        lines = [f"{r['finished']}  {r['from_version'] or 'none'} -> {r['version']} ({r['change_kind']})  "
                 + ((r["record"] + ("" if r["written"] else "  (not written: ella-deploy records "
                                    f"{r['version']})")) if r["record"] else "hotfix: no change record")
                 for r in listed]
        _emit(args.output, "\n".join(lines) or "no releases on record", listed)
        return ExitCode.OK
    if not versions.VERSION.match(args.record_version):
        raise EllaDeployError(f"records: {args.record_version!r} is not X.Y.Z", ExitCode.USAGE)
    sheet = _test_sheet(inventory, args.record_version, args.force)
    try:
        record = records.collect(inventory, args.record_version)
    except EllaDeployError as error:
        if sheet is None or "hotfix" not in error.message:
            raise
        _emit(args.output, f"{sheet['path']}\n{error.message}", {"record": None, "test_sheet": sheet})
        return ExitCode.OK
    written = records.write(record, records.records_dir(record["environment"]), force=args.force)
    text = f"{written['docx']}\n{written['markdown']}" + (f"\n{written['note']}" if written["note"] else "")
    text += f"\n{sheet['path']}" if sheet else ""
    _emit(args.output, text, {"record": record, **written, "test_sheet": sheet})
    return ExitCode.OK


def cmd_history(args: argparse.Namespace) -> int:
    from ella_deploy import history

    inventory = paths.resolve_inventory(args.inventory)
    records = history.fetch(inventory)
    if args.verify:
        chain = history.chain(inventory)
        _emit(args.output, f"audit log {audit.describe_chain(chain)}", chain)
        return ExitCode.OK if chain["intact"] else ExitCode.FAILED
    _emit(args.output, history.render(records), records)
    return ExitCode.OK


def cmd_control(args: argparse.Namespace) -> int:
    from ella_deploy import control

    from ella_deploy import confirm

    inventory = paths.resolve_inventory(args.inventory)
    command = audit.sanitized_command(args.argv)
    fenced = tuple(getattr(args, "peer_fenced", ()))
    for host in (getattr(args, "host", None), getattr(args, "to", None), *fenced):
        paths.check_host(inventory, host, args.command)
    confirm.require(args.command, inventory, *confirm.control(args.command, inventory, getattr(args, "host", None),
                                                              getattr(args, "to", None), fenced), yes=args.yes)
    progress = _progress(args.output)
    if args.command == "start":
        result = control.start(inventory, args.host, command, fenced, progress, args.break_lock)
    elif args.command == "stop":
        result = control.stop(inventory, args.host, command, progress, args.break_lock)
    elif args.command == "restart":
        result = control.restart(inventory, args.host, command, fenced, progress, args.break_lock)
    else:
        result = control.failover(inventory, getattr(args, "to", None), args.command == "failback", command,
                                  fenced, progress, args.break_lock)
    _emit(args.output, control.render(result),
          {"action": result.action, "record": result.record, "errors": list(result.errors)})
    if not result.ok:
        raise EllaDeployError(f"{result.action}: " + "; ".join(result.errors),
                              ExitCode.REFUSED if result.refused else ExitCode.FAILED)
    return ExitCode.OK


def cmd_recover(args: argparse.Namespace) -> int:
    from ella_deploy import control

    from ella_deploy import confirm

    inventory = paths.resolve_inventory(args.inventory)
    keep_new = args.keep_new.strip()
    if args.keep_new and not keep_new:
        raise EllaDeployError("recover --keep-new needs a reason (it is written to the audit log)", ExitCode.USAGE)
    confirm.require("recover", inventory, *confirm.recover(inventory, keep_new), yes=args.yes)
    found = control.recover(inventory, audit.sanitized_command(args.argv),
                            tuple(args.peer_fenced), _progress(args.output), keep_new=keep_new)
    _emit(args.output, control.render_recovery(found), found)
    if found["errors"]:
        return ExitCode.REFUSED if found["refused"] else ExitCode.FAILED
    return ExitCode.OK


def cmd_cli(args: argparse.Namespace) -> int:
    from ella_deploy import operations

    if args.command == "broadcast":
        ella_args = ["broadcast", args.broadcast_action]
        ella_args += [args.text] if args.broadcast_action == "new" else []
        ella_args += [str(args.id)] if args.broadcast_action == "deactivate" else []
    else:
        ella_args = args.cli_args[1:] if args.cli_args[:1] == ["--"] else args.cli_args
    from ella_deploy import confirm

    inventory = paths.resolve_inventory(args.inventory)

    def ask(writing: list[str]) -> None:
        confirm.require(args.command, inventory, *confirm.ella_cli(inventory, writing), yes=args.yes)

    command = audit.sanitized_command(audit.without_data(args.argv, ella_args[2:]))
    result = operations.ella_cli(inventory, ella_args, command, _progress(args.output), confirm=ask)
    console.close_all()
    if args.output == "json":
        _emit(args.output, "", result)
    else:
        sys.stdout.write(result["stdout"] + ("\n" if result["stdout"] and not result["stdout"].endswith("\n") else ""))
        sys.stderr.write(result["stderr"] + ("\n" if result["stderr"] and not result["stderr"].endswith("\n") else ""))
    return ExitCode.OK if int(result["rc"]) == 0 else ExitCode.FAILED


def cmd_backup(args: argparse.Namespace) -> int:
    from ella_deploy import operations

    record = operations.backup(paths.resolve_inventory(args.inventory), args.verify_restore,
                               audit.sanitized_command(args.argv), _progress(args.output),
                               rollback_point=args.rollback_point)
    backup = record.get("backup") or {}
    text = (f"backup of {record['rollback_point']}, the data before {record.get('version')}: "
            if record.get("rollback_point") else "")
    text += (f"backup {backup.get('path')} ({int(backup.get('size_bytes') or 0) / 1e6:.1f} MB, sha256 {backup.get('sha256')})"
            f"\n{backup.get('tables')} tables, {backup.get('rows')} rows at revision {backup.get('revision')}; "
            f"verified: {backup.get('verified')}")
    _emit(args.output, text, record)
    return ExitCode.OK


def cmd_logs(args: argparse.Namespace) -> int:
    from ella_deploy import operations

    since = operations.parse_since(args.since) if args.since else None
    if args.lines < 1:
        raise EllaDeployError("logs: --lines must be 1 or more", ExitCode.USAGE)
    if args.follow and (since is not None or args.output != "text"):
        raise EllaDeployError("logs: --follow prints raw lines as they come: use it with --lines, "
                              "not --since or --output json", ExitCode.USAGE)
    inventory = paths.resolve_inventory(args.inventory)
    host = args.host
    paths.check_host(inventory, host, "logs")
    if host is None:
        from ella_deploy import status

        found = status.collect(inventory)
        host = found.active_hosts[0] if len(found.active_hosts) == 1 else found.primary
    if args.follow:
        from ella_deploy import remote

        connection = remote.connect(inventory, host, "logs")
        argv = connection.ssh(remote.follow_argv(connection, operations.log_file(args.program, host), args.lines),
                              tty=False)
        try:
            returncode = remote.run(argv)
        except KeyboardInterrupt:
            return ExitCode.OK
        if returncode != 0:
            raise EllaDeployError(f"logs: following {operations.log_file(args.program, host)} on {host} ended "
                                  f"with exit code {returncode}", ExitCode.FAILED)
        return ExitCode.OK
    result = operations.logs(inventory, host, args.program, args.lines, since)
    lines = result["lines"]
    _emit(args.output, "\n".join(lines), {"host": result["host"], "program": args.program, "lines": lines})
    return ExitCode.OK


def cmd_db_task(args: argparse.Namespace) -> int:
    from ella_deploy import operations

    from ella_deploy import confirm

    inventory = paths.resolve_inventory(args.inventory)

    def ask(task: dict[str, Any]) -> None:
        confirm.require("db-task", inventory, *confirm.db_task(inventory, task), yes=args.yes)

    outcome = operations.db_task(inventory, args.script, args.commit, audit.sanitized_command(args.argv),
                                 _progress(args.output), confirm=ask)
    _emit(args.output, operations.render_db_task(outcome), outcome)
    return ExitCode.OK


def cmd_notify(args: argparse.Namespace) -> int:
    from ella_deploy import notify

    inventory = paths.resolve_inventory(args.inventory)
    progress = _progress(args.output)
    if args.command == "report-tsd":
        if not args.summary.strip() or not args.summary.isprintable() or (args.at and not args.at.isprintable()):
            raise EllaDeployError("report-tsd: give the summary as one line", ExitCode.USAGE)
        notice = notify.compose(inventory, "tsd", args.send, at=args.at, summary=args.summary.strip(),
                                attachments=notify.tsd_attachments(inventory), progress=progress)
    else:
        notify.validate(args.kind, args.at, args.notice_version)
        notice = notify.compose(inventory, args.kind, args.send, at=args.at, version=args.notice_version,
                                progress=progress)
    text = (f"sent to {', '.join(notice['recipients'])}" if notice["sent"] else notice["message"])
    _emit(args.output, text, notice)
    return ExitCode.OK


def cmd_psql(args: argparse.Namespace) -> int:
    from ella_deploy import remote

    if args.sql is not None and not args.sql.strip():
        raise EllaDeployError("psql: -c needs an SQL statement", ExitCode.USAGE)
    if args.output != "text":
        raise EllaDeployError("psql: prints psql's own output; --output json is not supported", ExitCode.USAGE)
    inventory = paths.resolve_inventory(args.inventory)
    paths.check_host(inventory, args.host, "psql")
    connection = remote.connect(inventory, args.host, "psql")
    interactive = args.sql is None and sys.stdin.isatty()
    returncode = remote.run(connection.ssh(remote.psql_argv(connection, args.sql), tty=interactive))
    return ExitCode.OK if returncode == 0 else ExitCode.FAILED


def cmd_completion(args: argparse.Namespace) -> int:
    from ella_deploy import completion

    if args.what != "versions":
        if args.refresh:
            raise EllaDeployError("completion: --refresh is for `completion versions`", ExitCode.USAGE)
        print(completion.script(args.what), end="")
        return ExitCode.OK
    inventory = paths.resolve_inventory(args.inventory)
    found = completion.refresh_versions(inventory) if args.refresh else completion.cached_versions(inventory)
    _emit(args.output, "\n".join(found), found)
    return ExitCode.OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    from ella_deploy.sandbox import Sandbox

    sandbox = Sandbox(progress=_progress(args.output))
    if args.action == "up":
        timings = sandbox.up(take_over=args.take_over)
        total = sum(timings.values())
        text = f"sandbox up in {total:.1f}s (" + ", ".join(f"{k} {v}s" for k, v in timings.items()) + ")"
        _emit(args.output, text, {"seconds": round(total, 1), "steps": timings})
    elif args.action == "reset":
        sandbox.reset(args.environment)
        _emit(args.output, f"{args.environment} reset to its first release", {"reset": args.environment})
    elif args.action == "down":
        sandbox.down(purge_image=args.purge_image)
        _emit(args.output, "sandbox removed", {"removed": True})
    else:
        rows = sandbox.status()
        text = "\n".join(f"{r['host']:<22}{r['address']:<15}{r['role']:<6}{r['state']}" for r in rows)
        _emit(args.output, text, rows)
    return ExitCode.OK


HANDLERS = {
    "check": cmd_check,
    "status": cmd_status,
    "release": cmd_release,
    "stage": cmd_stage,
    "rehearse": cmd_rehearse,
    "accept": cmd_accept,
    "history": cmd_history,
    "records": cmd_records,
    "cli": cmd_cli,
    "broadcast": cmd_cli,
    "backup": cmd_backup,
    "logs": cmd_logs,
    "psql": cmd_psql,
    "notify": cmd_notify,
    "report-tsd": cmd_notify,
    "db-task": cmd_db_task,
    "recover": cmd_recover,
    "start": cmd_control,
    "stop": cmd_control,
    "restart": cmd_control,
    "failover": cmd_control,
    "failback": cmd_control,
    "sandbox": cmd_sandbox,
    "completion": cmd_completion,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if argv[:1] == [COMPLETE]:
        from ella_deploy import completion

        return completion.complete(argv[1:], build_parser())
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        args.verbose = sum(getattr(args, dest, 0) for dest in VERBOSITY_DESTS)
        if args.output == "nagios" and args.command != "check":
            raise EllaDeployError(f"{args.command}: --output nagios is for check only", ExitCode.USAGE)
        if args.verbose:
            from ella_deploy import runner

            runner.VERBOSITY = args.verbose
            console.VERBOSITY = args.verbose
        if args.vault_password_file:
            vault_file = Path(args.vault_password_file).expanduser().resolve()
            if not vault_file.is_file():
                raise EllaDeployError(f"no vault password file {args.vault_password_file}", ExitCode.USAGE)
            # A path, passed on to ansible-playbook by its own variable; never the password.
            os.environ["ANSIBLE_VAULT_PASSWORD_FILE"] = str(vault_file)
        try:
            code = int(HANDLERS[args.command](args))
        except BaseException:
            console.close_all(failed=True)
            raise
        console.close_all()
        # Written out here, inside the handling of a closed pipe, not by the interpreter at exit.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except EllaDeployError as error:
        if debug:
            raise
        print(f"ella-deploy: {error.message}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print("ella-deploy: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the operator sees one line, --debug shows more
        if debug:
            raise
        print(f"ella-deploy: internal error: {error.__class__.__name__}: {error} (rerun with --debug)",
              file=sys.stderr)
        return int(ExitCode.FAILED)


def _closed_pipe() -> int:
    """The reader of our output went away (`| head -1`, `| grep -q`): stop without a word,
    with the exit status a shell gives a program that SIGPIPE ended (README: Exit codes)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())  # what is still buffered goes nowhere, quietly
        except (OSError, ValueError):
            pass
    return int(ExitCode.BROKEN_PIPE)


def run() -> None:
    sys.exit(main())
