"""Release downtime and orchestration overhead: ella-deploy against a bare baseline.

Runs on the sandbox (`ella-deploy sandbox up` first). Each round starts from `sandbox
reset` (2.0.0 running on p22-ella-01, the same generated data) and releases 2.1.0 (which
migrates), alternating:

  A  baseline: the release steps as a bare shell sequence on the host (podman exec, no
     Ansible): stop, pg_dump, symlink switch, migrate, start, wait until the API serves
     the new version. The floor.
  B  ella-deploy release 2.1.0 --yes: the same release through the tool, timed from the
     outside (wall) and by its audit record (downtime, steps).

Then: a no-op release, `status`, `check` (several runs each), and the backup formats
(custom, single stream, against directory with parallel jobs) at the chosen size.
Prints a table and writes JSON to benchmarks/results/. Ratios are medians of one run.

    .venv/bin/python benchmarks/release.py [--rounds 5] [--data-mb 100] [--growth 0,2,6]

writes benchmarks/results/release-<MB>mb.json (and a timestamped copy).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ella_deploy import paths  # noqa: E402
from ella_deploy.sandbox import Sandbox  # noqa: E402

PROD_ROOT = "/ess/p22/data/durable/production/ella"
CLI = [sys.executable, "-m", "ella_deploy", "--inventory", "sandbox"]
FROM, TO = "2.0.0", "2.1.0"
DB_URL = "postgresql://ella@p22-ella-db:5432/ella"

BASELINE = f"""
set -eu
ROOT={PROD_ROOT}
CFG=$ROOT/ops/supervisor/supervisor.cfg
export PGPASSFILE=$ROOT/ops/pgpass
mkdir -p $ROOT/backups
t() {{ date +%s.%N; }}
T0=$(t)
supervisorctl -c $CFG stop ella >/dev/null
T1=$(t)
pg_dump --no-password --format=custom --file=$ROOT/backups/baseline-$$.dump --dbname={DB_URL}
T2=$(t)
ln -s ../archive/releases/ella-release-{TO}.sif $ROOT/ella-prod/.ella.sif.new
mv -T $ROOT/ella-prod/.ella.sif.new $ROOT/ella-prod/ella.sif
T3=$(t)
DB_URL={DB_URL} singularity exec $ROOT/ella-prod/ella.sif ella-cli database upgrade head >/dev/null
T4=$(t)
supervisorctl -c $CFG start ella >/dev/null
until curl -fs http://127.0.0.1:3114/api/v1/config/ | grep -q '"{TO}"'; do sleep 0.05; done
T5=$(t)
echo $T0 $T1 $T2 $T3 $T4 $T5
"""


def podman_exec(container: str, script: str, user: str = "root") -> str:
    done = subprocess.run(["podman", "exec", "-i", "--user", user, container, "bash", "-s"], input=script,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{container}: {done.stderr or done.stdout}")
    return done.stdout


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT)
    return time.monotonic() - started, done


def generate_data(megabytes: int) -> None:
    """ELLA-like rows: analyses with assessments and logs, and wide annotation rows, indexed."""
    if megabytes <= 0:
        return
    # One annotation row of ~1 kB per kB wanted, plus analyses and assessments.
    rows = megabytes * 1000
    sql = f"""
    INSERT INTO analysis (name, genepanel)
        SELECT 'Diag-' || n, 'HBOC_v' || (n % 7) FROM generate_series(1, {rows // 50}) AS n;
    INSERT INTO alleleassessment (analysis_id, allele, classification)
        SELECT id, 'chr13:g.' || (32900000 + id) || 'A>G', ((id % 5) + 1)::text FROM analysis;
    INSERT INTO interpretationlog (analysis_id, user_id, message)
        SELECT id, 1 + id % 20, repeat('reviewed ', 20) FROM analysis;
    CREATE TABLE IF NOT EXISTS bench_annotation (
        id bigserial PRIMARY KEY, allele text NOT NULL, transcript text, annotation jsonb, note text);
    INSERT INTO bench_annotation (allele, transcript, annotation, note)
        SELECT 'chr' || (1 + n % 22) || ':g.' || n || 'C>T', 'NM_' || (100000 + n % 5000),
               jsonb_build_object('gnomad', n % 1000 / 1000.0, 'consequence', 'missense_variant',
                                  'hgvsc', 'c.' || n || 'C>T', 'pad', md5(n::text) || md5((n + 1)::text)),
               repeat(md5(n::text), 20)
        FROM generate_series(1, {rows}) AS n;
    CREATE INDEX IF NOT EXISTS bench_annotation_allele ON bench_annotation (allele);
    ANALYZE;
    """
    podman_exec("ella-sandbox-p22-ella-db", f"psql -q -v ON_ERROR_STOP=1 -d ella <<'SQL'\n{sql}\nSQL\n",
                user="postgres")


def database_bytes() -> int:
    return int(podman_exec("ella-sandbox-p22-ella-db", "psql -At -d ella -c \"SELECT pg_database_size('ella')\"",
                           user="postgres").strip())


def reset(data_mb: int) -> None:
    Sandbox().reset("sandbox")
    # The baseline's bench table is ELLA-owned like the rest (the migration must run over it).
    generate_data(data_mb)
    podman_exec("ella-sandbox-p22-ella-db", "psql -q -d ella -c 'ALTER TABLE IF EXISTS bench_annotation OWNER TO ella'",
                user="postgres")


def baseline_round() -> dict[str, float]:
    stamps = [float(x) for x in podman_exec("ella-sandbox-p22-ella-01", BASELINE, user="ella").split()]
    names = ["stop", "backup", "switch", "migrate", "start"]
    steps = {name: round(stamps[i + 1] - stamps[i], 2) for i, name in enumerate(names)}
    return {"wall": round(stamps[-1] - stamps[0], 2), "downtime": round(stamps[-1] - stamps[0], 2), "steps": steps}


def tool_round() -> dict[str, float]:
    wall, done = cli("--output", "json", "release", TO, "--yes", "--skip-staging-check")
    if done.returncode != 0:
        raise SystemExit(f"release failed: {done.stderr}")
    record = json.loads(done.stdout)["record"]
    steps = {step["name"]: round(step["seconds"], 2) for step in record["steps"]}
    return {"wall": round(wall, 2), "downtime": round(record["downtime_seconds"], 2), "steps": steps}


def timed(*args: str, runs: int = 3) -> list[float]:
    times = []
    for _ in range(runs):
        seconds, done = cli(*args)
        # check exits 1 or 2 when it finds a WARN or CRIT: it ran. A failure says so on stderr.
        if done.returncode not in (0, 1, 2) or done.stderr.startswith("ella-deploy:"):
            raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
        times.append(round(seconds, 2))
    return times


def backup_formats(jobs: int) -> dict[str, float]:
    """pg_dump of the live database: custom (one stream) against directory with `jobs`."""
    results = {}
    for name, options in (("custom", "--format=custom --file=$ROOT/backups/fmt.dump"),
                          (f"directory-j{jobs}", f"--format=directory --jobs={jobs} --file=$ROOT/backups/fmt.dir")):
        script = (f"set -eu; ROOT={PROD_ROOT}; export PGPASSFILE=$ROOT/ops/pgpass; rm -rf $ROOT/backups/fmt.*; "
                  f"mkdir -p $ROOT/backups; S=$(date +%s.%N); pg_dump --no-password {options} --dbname={DB_URL}; "
                  f"E=$(date +%s.%N); echo $S $E; rm -rf $ROOT/backups/fmt.*")
        start, end = (float(x) for x in podman_exec("ella-sandbox-p22-ella-01", script, user="ella").split())
        results[name] = round(end - start, 2)
    return results


def growth(extra_counts: list[int], data_mb: int) -> list[dict]:
    """status and a release with more ELLA VMs on the same storage and database."""
    from ella_deploy import sandbox as sandbox_module

    rows = []
    try:
        for extra in extra_counts:
            os.environ["ELLA_SANDBOX_EXTRA_HOSTS"] = str(extra)
            Sandbox().up()
            status = timed("status", runs=3)
            reset(data_mb)
            release = tool_round()
            rows.append({"ella_hosts": 2 + extra, "status_seconds": status, "release_wall": release["wall"],
                         "release_downtime": release["downtime"]})
            print(f"{2 + extra} ELLA hosts: status {median(status):.2f}s, release wall {release['wall']:.2f}s, "
                  f"downtime {release['downtime']:.2f}s", file=sys.stderr, flush=True)
    finally:
        names = list(sandbox_module.extra_hosts())
        os.environ["ELLA_SANDBOX_EXTRA_HOSTS"] = "0"
        for name in names:
            subprocess.run(["podman", "rm", "--force", "--time", "0", f"ella-sandbox-{name}"], capture_output=True)
    return rows


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds (default %(default)s)")
    parser.add_argument("--data-mb", type=int, default=100, help="generated ELLA-like data, MB (default %(default)s)")
    parser.add_argument("--growth", default="0,2,6", help="extra ELLA VMs to measure status and a release with "
                        "(default %(default)s: 2, 4 and 8 hosts; empty to skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if not Sandbox().status() or any(row["state"] != "running" for row in Sandbox().status()):
        raise SystemExit("the sandbox is not up: .venv/bin/ella-deploy sandbox up")

    rounds: dict[str, list[dict]] = {"baseline": [], "tool": []}
    size = 0
    for number in range(args.rounds):
        # Alternate which goes first, so drift on a shared machine hits both alike.
        order = ("baseline", "tool") if number % 2 == 0 else ("tool", "baseline")
        for which in order:
            reset(args.data_mb)
            size = database_bytes()
            rounds[which].append(baseline_round() if which == "baseline" else tool_round())
            print(f"round {number + 1} {which:<8} wall {rounds[which][-1]['wall']:6.2f}s "
                  f"downtime {rounds[which][-1]['downtime']:6.2f}s", file=sys.stderr, flush=True)

    # No-op release, status and check on the released environment.
    noop = timed("release", TO, "--yes", "--skip-staging-check")
    status = timed("status", runs=5)
    check = timed("check", runs=3)
    formats = backup_formats(jobs=os.cpu_count() or 2)
    grown = growth([int(n) for n in args.growth.split(",") if n.strip()], args.data_mb)

    summary = {}
    for which in ("baseline", "tool"):
        steps = sorted({s for r in rounds[which] for s in r["steps"]})
        summary[which] = {
            "wall": median([r["wall"] for r in rounds[which]]),
            "downtime": median([r["downtime"] for r in rounds[which]]),
            "steps": {s: median([r["steps"].get(s, 0.0) for r in rounds[which]]) for s in steps},
        }
    base, tool = summary["baseline"], summary["tool"]
    ratios = {"downtime": round(tool["downtime"] / base["downtime"], 2), "wall": round(tool["wall"] / base["wall"], 2),
              "downtime_overhead_seconds": round(tool["downtime"] - base["downtime"], 2)}
    result = {
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"hostname": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "release": f"{FROM} -> {TO} (migrations)", "rounds": args.rounds, "data_mb_requested": args.data_mb,
        "database_bytes": size, "summary": summary, "ratios": ratios, "raw": rounds,
        "noop_release_seconds": noop, "status_seconds": status, "check_seconds": check,
        "backup_format_seconds": formats, "growth": grown,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"release-{args.data_mb}mb-{stamp}.json", f"release-{args.data_mb}mb.json"):
        (args.out / name).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    print(f"\nRelease {FROM} -> {TO}, database {size / 1e6:.0f} MB, {args.rounds} rounds (medians, seconds)\n")
    print(f"{'':<22}{'baseline':>10}{'ella-deploy':>13}{'ratio':>8}")
    print(f"{'downtime':<22}{base['downtime']:>10.2f}{tool['downtime']:>13.2f}{ratios['downtime']:>8.2f}")
    print(f"{'wall':<22}{base['wall']:>10.2f}{tool['wall']:>13.2f}{ratios['wall']:>8.2f}")
    for step in sorted(set(base["steps"]) | set(tool["steps"])):
        print(f"  {step:<20}{base['steps'].get(step, 0):>10.2f}{tool['steps'].get(step, 0):>13.2f}")
    print(f"\ndowntime overhead {ratios['downtime_overhead_seconds']:+.2f}s")
    print(f"no-op release {median(noop):.2f}s   status {median(status):.2f}s   check {median(check):.2f}s")
    print("pg_dump " + ", ".join(f"{k} {v:.2f}s" for k, v in formats.items()))
    for row in grown:
        print(f"{row['ella_hosts']} ELLA hosts: status {median(row['status_seconds']):.2f}s, "
              f"release wall {row['release_wall']:.2f}s, downtime {row['release_downtime']:.2f}s")
    print(f"\nJSON: {args.out / f'release-{args.data_mb}mb.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
