"""Filters of the ella-deploy playbooks: the CLI's own rules, loaded from ella_deploy/.

The single-active rule, version resolution and audit step timing are written once, in
ella_deploy/guard.py, versions.py, audit.py, journal.py and sqlrun.py (standard library only). This plugin loads those files by
path, so a plain `ansible-playbook` or AWX run of this repository applies exactly the
rules the CLI does, without ella_deploy being installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[3] / "ella_deploy"


def _load(name):
    qualified = "ella_deploy_rules_" + name
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, _PACKAGE_DIR / (name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]


def ella_release_resolve(filenames, request):
    """Newest staged version matching `request` (X.Y.Z, 1.x, 1.17.x): {version, file, error}."""
    versions = _load("versions")
    files = versions.files_by_version(list(filenames))
    try:
        version = versions.resolve(request, sorted(files, key=versions.parse))
        return {"version": version, "file": files[version], "error": ""}
    except versions.VersionError as error:
        return {"version": "", "file": "", "error": str(error)}


def ella_release_versions(filenames):
    """Versions of the release files among `filenames` (paths or link targets), oldest first."""
    versions = _load("versions")
    return versions.versions_in(list(filenames))


def ella_change_kind(target, current):
    return _load("versions").change_kind(current or None, target)


def ella_guard_verdict(reports, names, fenced=(), session_rows=None, addresses=None):
    """The single-active verdict over `ella_host_facts` reports (None: unreachable) and
    pg_stat_activity rows (None: could not be read)."""
    guard = _load("guard")
    sessions = None if session_rows is None else guard.sessions_of(list(session_rows), guard.resolve_addresses(addresses))
    views = [
        guard.host_view(name, (reports or {}).get(name), sessions.by_host.get(name, 0) if sessions else 0)
        for name in names
    ]
    verdict = guard.judge(views, tuple(fenced or ()), sessions)
    return {
        "state": verdict.state,
        "active_hosts": list(verdict.active_hosts),
        "reasons": list(verdict.reasons),
        "db_sessions": dict(sessions.by_host) if sessions else None,
    }


def ella_guard_reports(results):
    """host -> its ella_host_facts report, None for a host that could not be reached,
    from the results of the guard's probe loop."""
    return {r["item"]: (None if r.get("unreachable") or r.get("failed") else r.get("ella_host")) for r in results}


def ella_guard_probe_results(hosts, hostvars):
    """The reports a play over the hosts registered (ella_guard's entry point `probe`:
    ella_guard_probe), as results of the guard's probe loop, each with its host as item; a
    host that play did not probe (or skipped) is left out: the guard's loop probes it."""
    results = []
    for host in hosts:
        probe = (hostvars[host] if host in hostvars else {}).get("ella_guard_probe")
        if probe and not probe.get("skipped"):
            results.append(dict(probe, item=host))
    return results


def ella_resolve_addresses(given):
    """Addresses of a host from its names/addresses, resolved on the controller."""
    return _load("guard").resolve_addresses({"host": given})["host"]


def ella_audit_steps(marks, finished):
    return _load("audit").steps_from_marks(list(marks or []), float(finished))


def ella_downtime(marks, finished=None):
    return _load("audit").downtime_seconds(list(marks or []), None if finished is None else float(finished))


def ella_journal_summary(journal):
    return _load("journal").summary(journal or None)


def ella_recovery(journal, serving, served=None, keep_new=""):
    """What `recover` does with a journal: {action: none|rollback|finish|finish_rollback|refuse,
    why}; serving: the new version passes the health gate on the journal's host now; served:
    what ELLA's own tables say the live database served since the window; keep_new: the
    operator's reason to keep the new version."""
    return _load("journal").recovery(journal or None, bool(serving), served or None, keep_new or "")


def ella_release_steps(marks, journal, finished):
    return _load("journal").release_steps(list(marks or []), journal or None, float(finished))


def ella_release_downtime(steps, finished=None):
    return _load("journal").downtime_seconds(list(steps or []), None if finished is None else float(finished))


def ella_sql_results(stdout, statements):
    """Per statement of a db-task run: command tag, rows, milliseconds (from psql's marked output)."""
    return _load("sqlrun").parse_output(list(statements or []), stdout or "")


def ella_count_differences(live, restored):
    """{table: [live rows, restored rows]} of the tables whose row counts differ (None: missing)."""
    live, restored = dict(live or {}), dict(restored or {})
    return {table: [live.get(table), restored.get(table)] for table in sorted(set(live) | set(restored))
            if live.get(table) != restored.get(table)}


def ella_fixtures_changed(now, recorded, order):
    """Fixtures (in apply order) whose file exists and whose checksum is not the one recorded
    at their last apply."""
    now, recorded = dict(now or {}), dict(recorded or {})
    return [name for name in order if now.get(name) and now.get(name) != recorded.get(name)]


def ella_audit_records(content_b64):
    """The records of an audit log as slurp read it (base64): a torn line (a write a crash cut
    short) is skipped, never fails the task that reads the log."""
    import base64

    return _load("audit").valid_records(base64.b64decode(content_b64 or "").decode("utf-8", "surrogateescape"))


class FilterModule:
    def filters(self):
        return {
            "ella_release_resolve": ella_release_resolve,
            "ella_release_versions": ella_release_versions,
            "ella_change_kind": ella_change_kind,
            "ella_guard_verdict": ella_guard_verdict,
            "ella_audit_steps": ella_audit_steps,
            "ella_resolve_addresses": ella_resolve_addresses,
            "ella_guard_reports": ella_guard_reports,
            "ella_guard_probe_results": ella_guard_probe_results,
            "ella_downtime": ella_downtime,
            "ella_sql_results": ella_sql_results,
            "ella_count_differences": ella_count_differences,
            "ella_journal_summary": ella_journal_summary,
            "ella_recovery": ella_recovery,
            "ella_fixtures_changed": ella_fixtures_changed,
            "ella_release_steps": ella_release_steps,
            "ella_release_downtime": ella_release_downtime,
            "ella_audit_records": ella_audit_records,
        }
