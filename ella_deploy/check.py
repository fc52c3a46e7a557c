"""`ella-deploy check`: the site procedure's debug checklist, decided in Python.

The check playbook only measures (on all hosts in parallel) and publishes one dict,
`measured`; this module turns it into checks, each OK, WARN, CRIT or UNKNOWN (not
measurable), with the measured value and the threshold, and renders them as text, JSON
and one Nagios line. A value that is missing or malformed makes its check UNKNOWN, with
the reason; evaluating never raises.

States and their order. Nagios exit codes are OK 0, WARN 1, CRIT 2, UNKNOWN 3. The
overall state is the most severe by SEVERITY, OK < UNKNOWN < WARN < CRIT (CRIT if any
check is CRIT, else WARN if any is WARN, else UNKNOWN if any is UNKNOWN, else OK; the
`max_state_alt` order of the monitoring plugins): a warning that was measured says more
than a value that could not be. No check at all is UNKNOWN: nothing measured is no
evidence of health.
"""

from __future__ import annotations

import datetime
import math
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ella_deploy.errors import ExitCode

State = Literal["OK", "WARN", "CRIT", "UNKNOWN"]
OK: State = "OK"
WARN: State = "WARN"
CRIT: State = "CRIT"
UNKNOWN: State = "UNKNOWN"

SEVERITY: dict[str, int] = {OK: 0, UNKNOWN: 1, WARN: 2, CRIT: 3}
NAGIOS_CODE: dict[str, int] = {OK: 0, WARN: 1, CRIT: 2, UNKNOWN: 3}
NAGIOS_WORD: dict[str, str] = {OK: "OK", WARN: "WARNING", CRIT: "CRITICAL", UNKNOWN: "UNKNOWN"}
NAGIOS_COUNT_WORD: dict[str, str] = {CRIT: "critical", WARN: "warning", UNKNOWN: "unknown"}

# Inventory defaults; `measured["thresholds"]` overrides them key by key.
DEFAULT_THRESHOLDS: dict[str, Any] = {
    "load_per_core": [1.0, 2.0],
    "memory_available_percent": [15, 5],
    "disk_free_percent": [15, 5],
    "db_connections_percent": [70, 90],
    "long_query_seconds": [300, 1800],
    "waiting_locks": [1, 10],
    "db_size_bytes": [None, None],
    "response_median_ms": [1000, 3000],
    "response_worst_ms": [3000, 10000],
    "server_error_percent": [1.0, 5.0],
    "server_errors_min": 1,
    "request_rate_per_minute": [600, 1200],
    "tracebacks": [1, 10],
    "uiexceptions_24h": [1, 20],
    "recent_deploy_hours": 2,
    # Zabbix problem severities (0 Not classified .. 5 Disaster): at or above.
    "zabbix_severity": [2, 4],
}

# Audit record kinds that change what runs: a recent one may explain a problem.
DEPLOY_KINDS = frozenset({"release", "rollback", "failover", "failback", "start", "stop", "restart", "db-task"})

GB = 1e9
QUERY_CHARS = 60
MESSAGE_CHARS = 80
LOG_LINE_CHARS = 120


@dataclass(frozen=True)
class Perf:
    """One Nagios performance value; warn and crit in Nagios range syntax ("15:" = alert below 15)."""

    value: float
    uom: str = ""
    warn: str = ""
    crit: str = ""

    def render(self, label: str) -> str:
        text = f"{_perf_label(label)}={_n(self.value)}{self.uom};{self.warn};{self.crit}"
        return text.rstrip(";")


@dataclass(frozen=True)
class Check:
    name: str
    host: str | None
    state: str
    # What was measured, for a human ("62.5% available (5.0 of 8.0 GB)").
    value: str
    # The rule it was judged by ("warn ≥ 1.0, crit ≥ 2.0").
    threshold: str
    detail: str = ""
    # Nagios perfdata: label (no spaces or quotes) -> value.
    perf: dict[str, Perf] = field(default_factory=dict, hash=False)


class _Unknown(Exception):
    """A value the check needs was not measured (or is malformed): the check is UNKNOWN."""


# --- reading values ------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string (Ansible templates yield strings); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _need(mapping: Any, key: str, what: str | None = None) -> float:
    value = _number(mapping.get(key)) if isinstance(mapping, dict) else None
    if value is None:
        raw = mapping.get(key) if isinstance(mapping, dict) else None
        raise _Unknown(f"{what or key} not measured" + ("" if raw is None else f" (got {raw!r})"))
    return value


def _percent(mapping: Any, part: str, whole: str) -> tuple[float, float, float]:
    """mapping[part], mapping[whole] and the one as a percentage of the other."""
    value, total = _need(mapping, part), _need(mapping, whole)
    if total <= 0:
        raise _Unknown(f"{whole} not measured (got {mapping.get(whole)!r})")
    return value, total, 100 * value / total


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _cut(text: Any, chars: int) -> str:
    """The first `chars` characters of the text on one line, with "…" when cut."""
    line = _one_line(text)
    return line if len(line) <= chars else line[:chars] + "…"


def _n(value: float) -> str:
    """A number as measured: ints as ints, otherwise up to two decimals but at least one (1.0, 0.21)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _q(value: float) -> str:
    """A measured quantity: whole numbers without decimals (15 min, 2 cores)."""
    return str(int(value)) if float(value).is_integer() else _n(value)


def _gb(value: float) -> str:
    return f"{value / GB:.1f} GB"


def _size(value: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def _perf_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_") or "value"


def _age(seconds: float) -> str:
    minutes = max(seconds, 0) / 60
    if minutes < 90:
        return f"{int(minutes)} min"
    if minutes < 48 * 60:
        return f"{int(minutes // 60)} h"
    return f"{int(minutes // (24 * 60))} days"


# --- thresholds ----------------------------------------------------------------------------------

Kind = Literal["at_or_above", "below", "above"]


@dataclass(frozen=True)
class _Rule:
    """A warn/crit pair; None = never. at_or_above: value ≥ limit; below: value < limit; above: value > limit."""

    warn: float | None
    crit: float | None
    kind: Kind
    unit: str = ""

    def state(self, value: float) -> State:
        for limit, state in ((self.crit, CRIT), (self.warn, WARN)):
            if limit is None:
                continue
            if self.kind == "at_or_above" and value >= limit:
                return state
            if self.kind == "below" and value < limit:
                return state
            if self.kind == "above" and value > limit:
                return state
        return OK

    def text(self) -> str:
        sign = {"at_or_above": "≥", "below": "<", "above": ">"}[self.kind]
        parts = [f"{word} {sign} {_n(limit)}{self.unit}"
                 for word, limit in (("warn", self.warn), ("crit", self.crit)) if limit is not None]
        return ", ".join(parts) or "none (reported only)"

    def perf(self, value: float, uom: str = "") -> Perf:
        def nagios_range(limit: float | None) -> str:
            if limit is None:
                return ""
            return f"{_n(limit)}:" if self.kind == "below" else _n(limit)
        return Perf(value, uom, nagios_range(self.warn), nagios_range(self.crit))


def _limit(value: Any, key: str) -> float | None:
    if value is None:
        return None
    number = _number(value)
    if number is None:
        raise _Unknown(f"threshold {key} malformed: {value!r}")
    return int(number) if isinstance(value, int) and not isinstance(value, bool) else number


def _rule(thresholds: dict[str, Any], key: str, kind: Kind, unit: str = "") -> _Rule:
    pair = thresholds.get(key)
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise _Unknown(f"threshold {key} malformed: {pair!r}")
    return _Rule(_limit(pair[0], key), _limit(pair[1], key), kind, unit)


def _scalar(thresholds: dict[str, Any], key: str) -> float:
    value = _limit(thresholds.get(key), key)
    if value is None:
        raise _Unknown(f"threshold {key} missing")
    return value


def _worst(states: Iterable[str]) -> str:
    return max(states, key=lambda s: SEVERITY[s], default=OK)


# --- the checks ----------------------------------------------------------------------------------


def _guarded(name: str, host: str | None, build: Callable[[], Check]) -> Check:
    """The check `build` makes, or UNKNOWN with the reason when a value is missing or malformed."""
    try:
        return build()
    except _Unknown as reason:
        return Check(name, host, UNKNOWN, "not measured", "-", str(reason))
    except Exception as error:  # a monitoring probe must report, never crash
        return Check(name, host, UNKNOWN, "not evaluated", "-", f"unexpected measurement: {error!r}")


def _host_checks(host: str, facts: Any, thresholds: dict[str, Any]) -> list[Check]:
    if not isinstance(facts, dict) or not isinstance(facts.get("reachable"), bool):
        return [Check("host reachable", host, UNKNOWN, "not measured", "crit if unreachable",
                      "reachability not reported")]
    if not facts["reachable"]:
        return [Check("host reachable", host, CRIT, "unreachable", "crit if unreachable",
                      _one_line(facts.get("error") or "no error reported"))]
    checks = [Check("host reachable", host, OK, "reachable", "crit if unreachable")]

    def load() -> Check:
        rule = _rule(thresholds, "load_per_core", "at_or_above")
        cores = _need(facts, "cores")
        loads = facts.get("load")
        load1 = _number(loads[0]) if isinstance(loads, list | tuple) and loads else None
        if load1 is None:
            raise _Unknown(f"load not measured (got {loads!r})")
        if cores <= 0:
            raise _Unknown(f"cores not measured (got {facts.get('cores')!r})")
        per_core = load1 / cores
        return Check("load", host, rule.state(per_core),
                     f"load {_n(load1)} on {_q(cores)} cores "
                     f"= {_n(per_core)}/core", rule.text(), perf={f"load_{host}": rule.perf(round(per_core, 4))})

    def memory() -> Check:
        rule = _rule(thresholds, "memory_available_percent", "below", "%")
        available, total, percent = _percent(facts, "mem_available_kb", "mem_total_kb")
        return Check("memory", host, rule.state(percent),
                     f"{_n(percent)}% available ({_gb(available * 1024)} of {_gb(total * 1024)})", rule.text(),
                     perf={f"memory_{host}": rule.perf(round(percent, 2), "%")})

    checks += [_guarded("load", host, load), _guarded("memory", host, memory)]
    disks = facts.get("disks")
    if not isinstance(disks, list) or not disks:
        checks.append(Check("disk", host, UNKNOWN, "not measured", "-", f"disks not measured (got {disks!r})"))
    for index, disk in enumerate(disks if isinstance(disks, list) else []):
        disk = _dict(disk)
        label = _one_line(disk.get("label") or disk.get("path") or f"#{index + 1}")

        def one_disk(disk: dict[str, Any] = disk, label: str = label) -> Check:
            rule = _rule(thresholds, "disk_free_percent", "below", "%")
            free, total, percent = _percent(disk, "free_bytes", "total_bytes")
            return Check(f"disk {label}", host, rule.state(percent),
                         f"{_n(percent)}% free ({_gb(free)} of {_gb(total)})", rule.text(),
                         _one_line(disk.get("path") or ""), {f"disk_{label}_{host}": rule.perf(round(percent, 2), "%")})

        checks.append(_guarded(f"disk {label}", host, one_disk))
    return checks


def _database_checks(database: Any, thresholds: dict[str, Any]) -> list[Check]:
    if not isinstance(database, dict):
        return [Check("database", None, UNKNOWN, "not measured", "-", "the database was not measured")]
    if database.get("error"):
        error = _one_line(database["error"])
        return [Check("database", None, CRIT, _cut(error, MESSAGE_CHARS), "crit on any error", error)]

    def connections() -> Check:
        rule = _rule(thresholds, "db_connections_percent", "at_or_above", "%")
        used, most, percent = _percent(database, "connections", "max_connections")
        return Check("database connections", None, rule.state(percent),
                     f"{_n(percent)}% ({int(used)} of {int(most)})", rule.text(),
                     perf={"db_connections": rule.perf(round(percent, 2), "%")})

    def long_queries() -> Check:
        rule = _rule(thresholds, "long_query_seconds", "above", " s")
        queries = database.get("long_running")
        if not isinstance(queries, list):
            raise _Unknown(f"long_running not measured (got {queries!r})")
        timed = [(seconds, _dict(q)) for q in queries if (seconds := _number(_dict(q).get("seconds"))) is not None]
        floor = rule.warn if rule.warn is not None else rule.crit if rule.crit is not None else 0.0
        over = [item for item in timed if item[0] > floor]
        perf = {"long_queries": Perf(len(over))}
        if not timed:
            return Check("long queries", None, OK, "none running", rule.text(), perf=perf)
        worst, query = max(timed, key=lambda item: item[0])
        perf["long_query_worst"] = rule.perf(worst, "s")
        detail = ""
        if over:
            text = _cut(query.get("query", ""), QUERY_CHARS)
            detail = f"pid {query.get('pid', '?')} ({query.get('state', '?')}): {text}"
        return Check("long queries", None, rule.state(worst),
                     f"{len(over)} over {_n(floor)} s, worst {_n(worst)} s", rule.text(), detail, perf)

    def lock_waits() -> Check:
        rule = _rule(thresholds, "waiting_locks", "at_or_above")
        waiting = _need(database, "waiting_locks")
        return Check("lock waits", None, rule.state(waiting), f"{int(waiting)} waiting", rule.text(),
                     perf={"lock_waits": rule.perf(int(waiting))})

    def size() -> Check:
        rule = _rule(thresholds, "db_size_bytes", "at_or_above", " B")
        size_bytes = _need(database, "size_bytes")
        limits = [(word, limit) for word, limit in (("warn", rule.warn), ("crit", rule.crit)) if limit is not None]
        text = ", ".join(f"{word} ≥ {_size(limit)}" for word, limit in limits) or rule.text()
        return Check("database size", None, rule.state(size_bytes), _size(size_bytes), text,
                     perf={"db_size": rule.perf(int(size_bytes), "B")})

    def uiexceptions() -> Check:
        rule = _rule(thresholds, "uiexceptions_24h", "at_or_above")
        count = _need(database, "uiexceptions_24h")
        newest = [_dict(e) for e in database.get("uiexceptions_newest") or [] if isinstance(e, dict)]
        detail = ""
        if newest and count > 0:
            latest = max(newest, key=lambda e: _timestamp(e.get("time")) or 0.0)
            detail = f"newest {latest.get('time', '?')}: {_cut(latest.get('message', ''), MESSAGE_CHARS)}"
        return Check("uiexceptions 24h", None, rule.state(count), f"{int(count)} in 24 h", rule.text(), detail,
                     {"uiexceptions_24h": rule.perf(int(count))})

    return [
        _guarded("database connections", None, connections),
        _guarded("long queries", None, long_queries),
        _guarded("lock waits", None, lock_waits),
        _guarded("database size", None, size),
        _guarded("uiexceptions 24h", None, uiexceptions),
    ]


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 time; None when neither."""
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()
    return None


def _response_check(host: str | None, probe: dict[str, Any], thresholds: dict[str, Any]) -> Check:
    url = _one_line(probe.get("url") or "?")
    path = urlsplit(url).path or url
    name = f"response {path}"

    def build() -> Check:
        median_rule = _rule(thresholds, "response_median_ms", "at_or_above", " ms")
        worst_rule = _rule(thresholds, "response_worst_ms", "at_or_above", " ms")
        threshold = f"median {median_rule.text()}; worst {worst_rule.text()}"
        times = [t for t in (_number(x) for x in probe.get("times_ms") or []) if t is not None]
        statuses = list(probe.get("statuses") or [])
        errors = [_one_line(e) for e in probe.get("errors") or []]
        if not times and not statuses and not errors:
            raise _Unknown(f"no request to {url} was measured")
        perf: dict[str, Perf] = {}
        timing = ""
        if times:
            median, worst = statistics.median(times), max(times)
            timing = f"median {_n(median)} ms, worst {_n(worst)} ms"
            label = f"response_{path.strip('/') or 'root'}"
            perf = {f"{label}_median": median_rule.perf(round(median, 1), "ms"),
                    f"{label}_worst": worst_rule.perf(round(worst, 1), "ms")}
        bad = [s for s in statuses if not (isinstance(s, int) and not isinstance(s, bool) and 200 <= s < 300)]
        attempts = len(statuses) + len(errors)
        failures = []
        if errors:
            failures.append(f"{len(errors)} of {attempts} failed: {errors[0]}")
        if bad:
            codes = ", ".join(sorted({str(s) for s in bad}))
            failures.append(f"HTTP {codes} on {len(bad)} of {attempts}")
        if failures:
            return Check(name, host, CRIT, ", ".join(failures), threshold, timing, perf)
        state = _worst([median_rule.state(statistics.median(times)), worst_rule.state(max(times))])
        return Check(name, host, state, timing, threshold, perf=perf)

    return _guarded(name, host, build)


def _api_checks(api: Any, guard: dict[str, Any], thresholds: dict[str, Any]) -> list[Check]:
    if api is None:
        detail = _one_line(guard.get("message") or "") if guard.get("verdict") == "NONE ACTIVE" else ""
        return [Check("api", None, CRIT, "no host runs ELLA", "crit unless a host runs ELLA", detail)]
    if not isinstance(api, dict):
        return [Check("api", None, UNKNOWN, "not measured", "-", f"api measurement malformed: {api!r}")]
    host = str(api["host"]) if api.get("host") else None
    urls = api.get("urls")
    checks: list[Check] = []
    if not isinstance(urls, list) or not urls:
        checks.append(Check("response", host, UNKNOWN, "not measured", "-", f"no URL was measured (got {urls!r})"))
    for probe in urls if isinstance(urls, list) else []:
        checks.append(_response_check(host, _dict(probe), thresholds))
    log = api.get("log")
    if not isinstance(log, dict):
        reason = f"the API log was not read (got {log!r})"
        return checks + [Check(name, host, UNKNOWN, "not measured", "-", reason)
                         for name in ("server errors", "request rate", "tracebacks")]

    def window() -> float:
        minutes = _need(log, "minutes", "log window")
        if minutes <= 0:
            raise _Unknown(f"log window not measured (got {log.get('minutes')!r})")
        return minutes

    def server_errors() -> Check:
        rule = _rule(thresholds, "server_error_percent", "at_or_above", "%")
        least = _scalar(thresholds, "server_errors_min")
        minutes = window()
        requests = _need(log, "requests")
        errors = _need(log, "server_errors")
        percent = 100 * errors / requests if requests > 0 else (100.0 if errors > 0 else 0.0)
        state = rule.state(percent) if errors >= least else OK
        detail = _cut(log.get("newest_server_error") or "", LOG_LINE_CHARS) if errors > 0 else ""
        if errors > 0 and errors < least:
            detail = f"fewer than {_n(least)} 5xx lines count as none; " + detail
        threshold = rule.text() + (f" (from {_n(least)} 5xx lines)" if least > 1 else "")
        return Check("server errors", host, state,
                     f"{_n(percent)}% ({int(errors)} of {int(requests)} requests in {_q(minutes)} min)",
                     threshold, detail.rstrip("; "), {"server_errors": rule.perf(round(percent, 2), "%")})

    def request_rate() -> Check:
        rule = _rule(thresholds, "request_rate_per_minute", "at_or_above", "/min")
        minutes = window()
        requests = _need(log, "requests")
        rate = requests / minutes
        return Check("request rate", host, rule.state(rate),
                     f"{_n(rate)}/min ({int(requests)} in {_q(minutes)} min)", rule.text(),
                     perf={"request_rate": rule.perf(round(rate, 2))})

    def tracebacks() -> Check:
        rule = _rule(thresholds, "tracebacks", "at_or_above")
        minutes = window()
        count = _need(log, "tracebacks")
        return Check("tracebacks", host, rule.state(count), f"{int(count)} in {_q(minutes)} min", rule.text(),
                     _one_line(log.get("file") or ""), {"tracebacks": rule.perf(int(count))})

    return checks + [_guarded("server errors", host, server_errors),
                     _guarded("request rate", host, request_rate),
                     _guarded("tracebacks", host, tracebacks)]


def _guard_check(guard: Any) -> Check:
    """The single-active rule's verdict; the value says why when it is not OK (the Nagios line shows values)."""
    name, threshold = "ella instances", "ok only when ONE ACTIVE"
    if not isinstance(guard, dict) or not guard.get("verdict"):
        return Check(name, None, UNKNOWN, "not measured", threshold, "the guard gave no verdict")
    verdict = str(guard["verdict"])
    active = [str(h) for h in guard.get("active") or []]
    unknown = [str(h) for h in guard.get("unknown") or []]
    message = _one_line(guard.get("message") or "")
    state: str
    if verdict == "ONE ACTIVE":
        state, why = OK, ", ".join(active)
    elif verdict == "NONE ACTIVE":
        state, why = CRIT, "ELLA is down"
    elif verdict == "CONFLICT":
        state, why = CRIT, f"more than one host runs ELLA against one database ({', '.join(active) or '?'})"
    elif verdict == "UNKNOWN" and len(active) == 1:
        state, why = WARN, (f"cannot rule out a second instance on {', '.join(unknown)}" if unknown
                            else f"cannot rule out a second instance beside {active[0]}")
    elif verdict == "UNKNOWN" and not active:
        state, why = CRIT, f"no host is known to run ELLA (unreachable: {', '.join(unknown) or '-'})"
    elif verdict == "UNKNOWN":
        state, why = CRIT, f"more than one host may run ELLA ({', '.join(active)})"
    else:
        state, why = UNKNOWN, f"unknown guard verdict {verdict!r}"
    return Check(name, None, state, f"{verdict}: {why}" if why else verdict, threshold, message)


def _describe(record: dict[str, Any], now: float | None = None) -> str:
    version = record.get("version") or record.get("to_version")
    text = " ".join(str(part) for part in (record.get("kind", "?"), version) if part)
    text += f" by {record.get('operator') or '?'}"
    finished = _timestamp(record.get("finished")) or _timestamp(record.get("started"))
    if now is not None and finished is not None:
        text += f" {_age(now - finished)} ago"
    return _one_line(text)


def _deploy_check(deploys: Any, thresholds: dict[str, Any], now: float) -> Check:
    name = "recent deploys"

    def build() -> Check:
        hours = _scalar(thresholds, "recent_deploy_hours")
        threshold = f"warn if a deploy is newer than {_n(hours)} h or the last release failed"
        if not isinstance(deploys, list):
            raise _Unknown(f"the audit log was not read (got {deploys!r})")
        records = [r for r in deploys if isinstance(r, dict)]
        # A db-task dry run changed nothing (its transaction was rolled back).
        changes = [r for r in records if r.get("kind") in DEPLOY_KINDS and r.get("mode") != "dry-run"]
        if not changes:
            return Check(name, None, OK, "no deploys on record", threshold)
        newest = changes[-1]
        finished = _timestamp(newest.get("finished")) or _timestamp(newest.get("started"))
        if finished is None:
            raise _Unknown(f"the time of the newest deploy is not recorded: {_describe(newest)}")
        warnings, details = [], []
        recent = now - finished < hours * 3600
        if recent:
            warnings.append(_describe(newest, now))
            details.append(f"on {newest.get('host') or '?'}: did a recent update cause this?")
        releases = [r for r in changes if r.get("kind") == "release"]
        if releases and releases[-1].get("outcome") != "success":
            release = releases[-1]
            warnings.append(f"last release {release.get('to_version') or release.get('version') or '?'} "
                            f"{release.get('outcome') or 'without outcome'}")
            if not (recent and release is newest):
                details.append(f"{_describe(release, now)} on {release.get('host') or '?'}")
        if warnings:
            return Check(name, None, WARN, ", ".join(warnings), threshold, "; ".join(details))
        return Check(name, None, OK, _describe(newest, now), threshold,
                     f"on {newest.get('host') or '?'}, {newest.get('outcome') or 'no outcome'}")

    return _guarded(name, None, build)


def _severity(level: float | None) -> str:
    from ella_deploy.zabbix import SEVERITIES

    if level is None:
        return "never"
    index = int(level)
    return SEVERITIES[index] if 0 <= index < len(SEVERITIES) else f"severity {index}"


def _zabbix_checks(zabbix: Any, thresholds: dict[str, Any], now: float) -> list[Check]:
    """Zabbix's active problems of the ELLA hosts and the database host, one line each (a host
    without any: one OK line). Not configured: one OK line saying so. Zabbix unreachable or
    the token refused: one WARN line (a blind spot, not an outage of ELLA)."""
    name = "zabbix"
    if zabbix is None:
        return [Check(name, None, UNKNOWN, "not asked", "-", "the check playbook published no Zabbix result")]
    if not isinstance(zabbix, dict):
        return [Check(name, None, UNKNOWN, "not measured", "-", f"Zabbix result malformed: {zabbix!r}")]
    if not zabbix.get("configured"):
        return [Check(name, None, OK, "Zabbix not configured", "asked when ella_check_zabbix_url and "
                      "ella_check_zabbix_token are set")]

    def build() -> list[Check]:
        rule = _rule({"zabbix_severity": zabbix.get("severity") or thresholds.get("zabbix_severity")},
                     "zabbix_severity", "at_or_above")
        threshold = f"warn ≥ {_severity(rule.warn)}, crit ≥ {_severity(rule.crit)}"
        where = _one_line(zabbix.get("url") or "")
        if zabbix.get("error"):
            return [Check(name, None, WARN, _cut(zabbix["error"], 2 * MESSAGE_CHARS), threshold,
                          "problems not known: " + (where or "-"))]
        hosts = zabbix.get("hosts")
        problems = zabbix.get("problems")
        if not isinstance(hosts, dict) or not isinstance(problems, list):
            raise _Unknown(f"Zabbix result without hosts or problems: {sorted(zabbix)}")
        checks = []
        for host in [str(h) for h in zabbix.get("requested_hosts") or sorted(hosts)]:
            known = _dict(hosts.get(host))
            if not known.get("found"):
                checks.append(Check(name, host, WARN, "not in Zabbix: its problems are not seen", threshold,
                                    "no Zabbix host of that name (ella_check_zabbix_hosts)"))
                continue
            if not known.get("monitored", True):
                checks.append(Check(name, host, WARN, "disabled in Zabbix: its problems are not seen", threshold,
                                    f"Zabbix host {known.get('zabbix_host') or host}"))
            mine = [_dict(p) for p in problems if _dict(p).get("host") == host]
            mine.sort(key=lambda p: (-int(_number(p.get("severity")) or 0), -(_number(p.get("since")) or 0)))
            maintenance = " (in maintenance)" if known.get("maintenance") else ""
            if not mine and known.get("monitored", True):
                checks.append(Check(name, host, OK, "no active problems" + maintenance, threshold))
            for problem in mine:
                level = _number(problem.get("severity"))
                if level is None:
                    raise _Unknown(f"Zabbix problem without severity: {problem!r}")
                since = _number(problem.get("since"))
                notes = [f"since {_age(now - since)}" if since else "",
                         "acknowledged" if problem.get("acknowledged") else "",
                         "suppressed (maintenance)" if problem.get("suppressed") else ""]
                # A suppressed problem is one a maintenance window expects: listed, not alerted.
                state = OK if problem.get("suppressed") else rule.state(level)
                checks.append(Check(name, host, state, f"{_severity(level)}: {_cut(problem.get('name'), MESSAGE_CHARS)}",
                                    threshold, ", ".join(note for note in notes if note)))
        return checks

    try:
        return build()
    except _Unknown as reason:
        return [Check(name, None, UNKNOWN, "not measured", "-", str(reason))]
    except Exception as error:  # a monitoring probe must report, never crash
        return [Check(name, None, UNKNOWN, "not evaluated", "-", f"unexpected Zabbix result: {error!r}")]


def evaluate(measured: dict[str, Any]) -> list[Check]:
    """The checks, in a stable order: instances, hosts (sorted), API, database, deploys, Zabbix
    (when the measurement asked it: a `zabbix` key)."""
    measured = _dict(measured)
    thresholds = {**DEFAULT_THRESHOLDS, **_dict(measured.get("thresholds"))}
    now = _number(measured.get("checked_at"))
    guard = _dict(measured.get("guard"))
    checks = [_guard_check(measured.get("guard"))]
    hosts = measured.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        checks.append(Check("host reachable", None, UNKNOWN, "not measured", "crit if unreachable",
                            "no host was measured"))
    for host in sorted(hosts if isinstance(hosts, dict) else {}):
        checks += _host_checks(str(host), hosts[host], thresholds)
    checks += _api_checks(measured.get("api"), guard, thresholds)
    checks += _database_checks(measured.get("database"), thresholds)
    checks.append(_deploy_check(measured.get("deploys"), thresholds, time.time() if now is None else now))
    if "zabbix" in measured:
        checks += _zabbix_checks(measured["zabbix"], thresholds, time.time() if now is None else now)
    return checks


# --- verdict and output --------------------------------------------------------------------------


def overall(checks: Sequence[Check]) -> str:
    """CRIT if any CRIT, else WARN if any WARN, else UNKNOWN if any UNKNOWN, else OK; no checks: UNKNOWN."""
    if not checks:
        return UNKNOWN
    return _worst(c.state for c in checks)


def exit_code(checks: Sequence[Check], nagios: bool) -> int:
    """Nagios: OK 0, WARN 1, CRIT 2, UNKNOWN 3. Otherwise ExitCode: OK, DEGRADED (WARN, UNKNOWN), FAILED (CRIT)."""
    state = overall(checks)
    if nagios:
        return NAGIOS_CODE[state]
    return int({OK: ExitCode.OK, WARN: ExitCode.DEGRADED, UNKNOWN: ExitCode.DEGRADED}.get(state, ExitCode.FAILED))


def _when(measured: dict[str, Any]) -> str:
    at = _number(_dict(measured).get("checked_at"))
    if at is None:
        return "an unknown time"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_text(checks: Sequence[Check], measured: dict[str, Any]) -> str:
    """A header line, then one aligned line per check: state, name, host, value, (threshold), detail."""
    environment = _one_line(_dict(measured).get("environment") or "?")
    rows = [(c.state, _one_line(c.name), _one_line(c.host or "-"), _one_line(c.value),
             f"({_one_line(c.threshold)})", _one_line(c.detail)) for c in checks]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(5)]
    lines = [f"ELLA {environment} check at {_when(measured)}: {overall(checks)}"]
    lines += ["  ".join(cell.ljust(widths[i]) if i < 5 else cell for i, cell in enumerate(row)).rstrip()
              for row in rows]
    return "\n".join(lines)


def render_nagios(checks: Sequence[Check]) -> str:
    """One line: "ELLA CRITICAL - 1 critical, 2 warning: <non-OK checks, most severe first> | <perfdata>"."""
    state = overall(checks)
    failing = sorted((c for c in checks if c.state != OK), key=lambda c: -SEVERITY[c.state])
    if failing:
        counts = ", ".join(f"{sum(c.state == s for c in failing)} {NAGIOS_COUNT_WORD[s]}"
                           for s in (CRIT, WARN, UNKNOWN) if any(c.state == s for c in failing))
        items = "; ".join(f"{c.name}{f' on {c.host}' if c.host else ''}: {c.value}" for c in failing)
        summary = f"{counts}: {items}"
    else:
        summary = f"{len(checks)} checks ok" if checks else "nothing was checked"
    # "|" starts the perfdata in Nagios: none may appear in the text.
    text = _one_line(f"ELLA {NAGIOS_WORD[state]} - {summary}").replace("|", "/")
    perfdata = " ".join(perf.render(label) for c in checks for label, perf in c.perf.items())
    return f"{text} | {perfdata}" if perfdata else text


def as_dict(checks: Sequence[Check], measured: dict[str, Any]) -> dict[str, Any]:
    return {"state": overall(checks), "checks": [asdict(c) for c in checks], "measured": measured}


# ---- Measuring: one run of check.yml -> `measured` -------------------------------------------

# Audit records handed to the `recent deploys` check.
DEPLOYS_KEPT = 20


def measure(inventory: Any, progress: Any = None) -> dict[str, Any]:
    """Run check.yml (reads only, every host in parallel) and shape what it published."""
    import base64
    import dataclasses

    from ella_deploy import audit, status
    from ella_deploy.runner import run_playbook

    result = run_playbook("check.yml", inventory, progress=progress)
    # check.yml asks Zabbix in a play on the controller: localhost is no host of the environment.
    zabbix_failure = next((f"{f.task}: {f.message}" for f in result.failures if f.host == "localhost"), "")
    result = dataclasses.replace(result, failures=[f for f in result.failures if f.host != "localhost"],
                                 stats={h: c for h, c in result.stats.items() if h != "localhost"})
    environment = status.from_result(result, inventory, "check")
    published = result.published
    host_facts: dict[str, Any] = published.get("ella_check_hosts") or {}
    hosts: dict[str, Any] = {}
    for host in environment.hosts:
        facts = host_facts.get(host.host)
        if not host.reachable or facts is None:
            hosts[host.host] = {"reachable": False, "error": host.error or "not measured"}
        else:
            hosts[host.host] = {"reachable": True, **{k: facts.get(k) for k in
                                                      ("cores", "load", "mem_total_kb", "mem_available_kb", "disks")}}
    api = None
    if environment.active_hosts and environment.active_hosts[0] in host_facts:
        active = environment.active_hosts[0]
        facts = host_facts[active]
        log = dict(facts.get("log") or {})
        if log:
            # Tracebacks of the access log and of ELLA's and supervisord's logs on that host.
            log["tracebacks"] = int(log.get("tracebacks") or 0) + int((facts.get("tracebacks") or {}).get("count") or 0)
        api = {"host": active, "urls": facts.get("urls") or [], "log": log or None}
    try:
        records = audit.read_records(base64.b64decode(published.get("ella_audit_log") or "").decode())
    except ValueError:
        records = None
    return {
        "environment": environment.environment,
        "checked_at": time.time(),
        "thresholds": published.get("ella_check_thresholds") or {},
        "hosts": hosts,
        "api": api,
        "database": published.get("ella_check_database"),
        "guard": {"verdict": environment.verdict, "active": list(environment.active_hosts),
                  "unknown": [h.host for h in environment.hosts if not h.reachable],
                  "message": "; ".join(environment.reasons)},
        "deploys": None if records is None else records[-DEPLOYS_KEPT:],
        # Asked by check.yml's play on the controller (ella_check's `zabbix` entry point).
        "zabbix": published.get("ella_check_zabbix") or (
            {"configured": True, "error": f"Zabbix not asked: {zabbix_failure}"} if zabbix_failure else None),
    }
