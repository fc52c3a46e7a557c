"""Release downtime and the tool's overhead, on real ELLA: ella-deploy against bare sequences.

Runs on the sandbox (`ella-deploy sandbox up` first). For each database size, the sandbox's
prod environment is reset to ELLA 1.16.5 running on p22-ella-01 with the same generated data
(real ELLA tables: alleles with their annotations, about 1 kB per row), then ELLA 1.17.0 is
released (two real migrations, a new configuration schema), three ways, alternating:

  procedure  the written procedure typed perfectly, as one shell script on the host: stop,
             pg_dump (custom format) inside the window, switch the symlink and the
             configuration, `ella-cli database upgrade head` in the new image, start, wait
             until the API answers. Downtime = its whole run.
  floor      the same with the procedure's dump replaced by the cheapest rollback point the
             server offers (CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY, as ella-deploy
             makes its rollback point; PostgreSQL 15's default WAL_LOG is slower for a whole
             database): what the database and ELLA must do.
  tool       `ella-deploy release 1.17.0 --yes`, timed from outside (wall) and by its own
             record (downtime from stop to serving, steps).

The bare sequences read ELLA's run line (binds, environment) from the supervisor.cfg the
sandbox runs, and take 1.17.0's configuration from a warm-up release by the tool (not
counted), so all three do the same work. Then a no-op release, `status` and `check` (several
runs each), and `status` and a release with 2, 4 and 8 ELLA hosts.

    .venv/bin/python benchmarks/release.py [--sizes 100,1000,4000] [--rounds 3] [--growth 0,2,6]

Prints a table per size and writes benchmarks/results/release.json (and a timestamped copy).
Ratios are of medians measured in this run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
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
HOST, DB_HOST = "ella-sandbox-p22-ella-01", "ella-sandbox-p22-ella-db"
CLI = [sys.executable, "-m", "ella_deploy", "--inventory", "sandbox"]
FROM, TO = "1.16.5", "1.17.0"
# On the host, outside the storage that `sandbox reset` puts back.
CONFIG_NEXT = f"/tmp/.bench-ella_config-{TO}.yml"
# Where the written procedure's dump goes and what the floor's copy is called.
DUMP = f"{PROD_ROOT}/backups/bench-procedure.dump"
FLOOR_COPY = "ella_bench_floor"


def podman_exec(container: str, script: str, user: str = "root") -> str:
    done = subprocess.run(["podman", "exec", "-i", "--user", user, container, "bash", "-s"], input=script,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{container}: {done.stderr or done.stdout}")
    return done.stdout


def psql(sql: str, database: str = "ella") -> str:
    return podman_exec(DB_HOST, f"psql -q -At -v ON_ERROR_STOP=1 -d {database} <<'SQL'\n{sql}\nSQL\n", user="postgres")


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL)
    return time.monotonic() - started, done


def runner_runs() -> set[str]:
    runs = paths.state_dir() / "runs"
    return {p.name for p in runs.iterdir()} if runs.exists() else set()


# ----- the data ------------------------------------------------------------------------------
def generate_data(megabytes: int) -> None:
    """Alleles and their annotations in ELLA's own tables (the bulk of a real ELLA database),
    about 1 kB per annotation row, with ELLA's indexes. ELLA's annotation triggers are left
    out while loading (session_replication_role) so the load takes seconds, not minutes."""
    rows = megabytes * 900
    psql(f"""
SET session_replication_role = replica;
INSERT INTO allele (genome_reference, chromosome, start_position, open_end_position, change_from, change_to,
                    change_type, vcf_pos, vcf_ref, vcf_alt, length, caller_type)
    SELECT 'GRCh37', (1 + n % 22)::text, 1000 + n, 1001 + n, 'C', 'T', 'SNP', 1001 + n, 'C', 'T', 1, 'snv'
    FROM generate_series(1, {rows}) AS n;
INSERT INTO annotation (allele_id, annotations, date_created, schema_version, annotation_config_id)
    SELECT id, jsonb_build_object(
        'frequencies', jsonb_build_object('GNOMAD_GENOMES', jsonb_build_object(
            'freq', jsonb_build_object('G', (id % 1000) / 1000.0), 'count', jsonb_build_object('G', id % 97))),
        'transcripts', jsonb_build_array(jsonb_build_object(
            'transcript', 'NM_' || (100000 + id % 5000) || '.1', 'hgnc_id', 1000 + id % 3000,
            'symbol', 'GENE' || (id % 3000), 'HGVSc', 'c.' || id || 'C>T', 'HGVSp', 'p.(Arg' || (id % 900) || 'Trp)',
            'consequences', jsonb_build_array('missense_variant'), 'strand', 1, 'is_canonical', true,
            'in_last_exon', 'no', 'exon', (id % 20) || '/20')),
        'external', jsonb_build_object('CLINVAR', jsonb_build_object('variant_id', id, 'items', repeat(md5(id::text), 8))),
        'references', jsonb_build_array(jsonb_build_object('pubmed_id', 10000000 + id, 'source', 'VEP'))),
        now(), 1, (SELECT min(id) FROM annotationconfig)
    FROM allele;
SET session_replication_role = DEFAULT;
ANALYZE;
""")


def database_bytes() -> int:
    return int(psql("SELECT pg_database_size('ella');"))


# ----- the bare sequences --------------------------------------------------------------------
def run_line() -> tuple[str, dict[str, str]]:
    """ELLA's run line as the sandbox's supervisor.cfg has it: `singularity run <binds> <image>`
    and its SINGULARITYENV_ environment."""
    config = podman_exec(HOST, f"cat {PROD_ROOT}/ops/supervisor/supervisor.cfg", user="ella")
    program = config.split("[program:ella]", 1)[1]
    command = re.search(r"^command=(.*)$", program, re.M).group(1)
    environment = dict(re.findall(r'(SINGULARITYENV_\w+)="([^"]*)"', re.search(r"^environment=(.*)$",
                                                                               program, re.M).group(1)))
    return command, environment


def bare_script(rollback_point: str, command: str, environment: dict[str, str]) -> str:
    """One release by hand, timed at each step on the host; `rollback_point` is the shell step
    between stop and switch."""
    exports = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in environment.items())
    migrate = command.replace("singularity run", "singularity exec", 1) + " ella-cli database upgrade head"
    return f"""
set -eu
cd /tmp
ROOT={PROD_ROOT}
CFG=$ROOT/ops/supervisor/supervisor.cfg
export PGPASSFILE=$ROOT/ops/pgpass
{exports}
t() {{ date +%s.%N; }}
T0=$(t)
supervisorctl -c $CFG stop ella >/dev/null
T1=$(t)
{rollback_point}
T2=$(t)
ln -sfn ../archive/releases/ella-release-v{TO}.sif $ROOT/ella-prod/.ella.sif.new
mv -T $ROOT/ella-prod/.ella.sif.new $ROOT/ella-prod/ella.sif
cp {CONFIG_NEXT} $ROOT/ella-prod/data/ella_config.yml
T3=$(t)
{migrate} >/dev/null 2>&1
T4=$(t)
supervisorctl -c $CFG start ella >/dev/null
until curl -fs -o /dev/null http://127.0.0.1:3114/api/v1/config/; do sleep 0.1; done
T5=$(t)
echo $T0 $T1 $T2 $T3 $T4 $T5
"""


DB_URL = "postgresql://ella@p22-ella-db:5432"
ROLLBACK_POINTS = {
    "procedure": f"mkdir -p $ROOT/backups; pg_dump --no-password --format=custom --file={DUMP} --dbname={DB_URL}/ella",
    # ELLA's sessions end with ELLA; CREATE DATABASE waits for none (retried as a person would).
    "floor": (f"until psql --no-password -q -d {DB_URL}/postgres "
              f"-c 'CREATE DATABASE {FLOOR_COPY} TEMPLATE ella STRATEGY FILE_COPY' 2>/dev/null; do sleep 0.1; done"),
}


def bare_round(kind: str, command: str, environment: dict[str, str]) -> dict:
    output = podman_exec(HOST, bare_script(ROLLBACK_POINTS[kind], command, environment), user="ella")
    stamps = [float(x) for x in output.split()]
    names = ["stop", "rollback_point", "switch", "migrate", "start"]
    steps = {name: round(stamps[i + 1] - stamps[i], 2) for i, name in enumerate(names)}
    podman_exec(HOST, f"rm -f {DUMP}", user="ella")
    psql(f"DROP DATABASE IF EXISTS {FLOOR_COPY};", database="postgres")
    return {"wall": round(stamps[-1] - stamps[0], 2), "downtime": round(stamps[-1] - stamps[0], 2), "steps": steps}


def tool_release(version: str = TO) -> dict:
    before = runner_runs()
    wall, done = cli("--output", "json", "release", version, "--yes", "--skip-staging-check")
    if done.returncode != 0:
        raise SystemExit(f"release {version} failed ({done.returncode}): {done.stderr}")
    record = json.loads(done.stdout)["record"]
    steps = {step["name"]: round(step["seconds"], 2) for step in record.get("steps", [])}
    return {"wall": round(wall, 2), "downtime": round(record.get("downtime_seconds") or 0.0, 2), "steps": steps,
            "runner_runs": len(runner_runs() - before)}


def timed(*args: str, runs: int = 3) -> list[float]:
    times = []
    for _ in range(runs):
        seconds, done = cli(*args)
        # check exits 1 or 2 when it finds a WARN or CRIT: it ran. A failure says so on stderr.
        if done.returncode not in (0, 1, 2) or done.stderr.startswith("ella-deploy:"):
            raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
        times.append(round(seconds, 2))
    return times


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def spread(values: list[float]) -> list[float]:
    return [round(min(values), 2), round(max(values), 2)] if values else []


# ----- one size ------------------------------------------------------------------------------
def measure_size(megabytes: int, rounds: int) -> dict:
    sandbox = Sandbox()
    template = f"bench_ella_{megabytes}mb"
    print(f"== {megabytes} MB: generating data", file=sys.stderr, flush=True)
    sandbox.reset("sandbox")
    generate_data(megabytes)
    sandbox.save_database("sandbox", template)
    size = database_bytes()

    # Warm-up (not counted): the tool's release leaves 1.17.0's configuration, which the bare
    # sequences then use; the images are read once so every contender starts with warm caches.
    sandbox.reset("sandbox", database_template=template)
    tool_release()
    podman_exec(HOST, f"cp {PROD_ROOT}/ella-prod/data/ella_config.yml {CONFIG_NEXT}", user="ella")

    results: dict[str, list[dict]] = {"procedure": [], "floor": [], "tool": []}
    contenders = list(results)
    for number in range(rounds):
        # Rotate the order, so drift on a shared machine hits all alike.
        for kind in contenders[number % 3:] + contenders[:number % 3]:
            sandbox.reset("sandbox", database_template=template)
            command, environment = run_line()
            results[kind].append(tool_release() if kind == "tool" else bare_round(kind, command, environment))
            print(f"{megabytes} MB round {number + 1} {kind:<9} wall {results[kind][-1]['wall']:7.2f}s "
                  f"downtime {results[kind][-1]['downtime']:7.2f}s", file=sys.stderr, flush=True)

    summary = {}
    for kind, rows in results.items():
        steps = sorted({s for r in rows for s in r["steps"]})
        summary[kind] = {"wall": median([r["wall"] for r in rows]), "downtime": median([r["downtime"] for r in rows]),
                         "downtime_spread": spread([r["downtime"] for r in rows]),
                         "wall_spread": spread([r["wall"] for r in rows]),
                         "steps": {s: median([r["steps"][s] for r in rows if s in r["steps"]]) for s in steps}}
    procedure, floor, tool = summary["procedure"], summary["floor"], summary["tool"]
    ratios = {"downtime_vs_procedure": round(tool["downtime"] / procedure["downtime"], 2),
              "wall_vs_procedure": round(tool["wall"] / procedure["wall"], 2),
              "downtime_over_floor_seconds": round(tool["downtime"] - floor["downtime"], 2),
              "floor_vs_procedure": round(floor["downtime"] / procedure["downtime"], 2)}
    psql(f"DROP DATABASE IF EXISTS {template};", database="postgres")
    return {"data_mb_requested": megabytes, "database_bytes": size, "rounds": rounds, "summary": summary,
            "ratios": ratios, "runner_runs_per_release": median([r["runner_runs"] for r in results["tool"]]),
            "raw": results}


def growth(extra_counts: list[int]) -> list[dict]:
    """status and a release with more ELLA VMs on the same storage and database."""
    from ella_deploy import sandbox as sandbox_module

    rows = []
    try:
        for extra in extra_counts:
            os.environ["ELLA_SANDBOX_EXTRA_HOSTS"] = str(extra)
            Sandbox().up()
            Sandbox().reset("sandbox")
            status = timed("status", runs=3)
            release = tool_release()
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


def print_size(row: dict) -> None:
    s, r = row["summary"], row["ratios"]
    print(f"\nELLA {FROM} -> {TO}, database {row['database_bytes'] / 1e6:.0f} MB, {row['rounds']} rounds "
          "(medians, seconds; downtime spread min-max)\n")
    print(f"{'':<20}{'procedure':>11}{'floor':>9}{'ella-deploy':>13}")
    print(f"{'downtime':<20}{s['procedure']['downtime']:>11.2f}{s['floor']['downtime']:>9.2f}"
          f"{s['tool']['downtime']:>13.2f}")
    print(f"{'  spread':<20}{str(s['procedure']['downtime_spread']):>11}{str(s['floor']['downtime_spread']):>9}"
          f"{str(s['tool']['downtime_spread']):>13}")
    print(f"{'whole release':<20}{s['procedure']['wall']:>11.2f}{s['floor']['wall']:>9.2f}{s['tool']['wall']:>13.2f}")
    for step in sorted(set(s["procedure"]["steps"]) | set(s["tool"]["steps"])):
        print(f"  {step:<18}{s['procedure']['steps'].get(step, 0):>11.2f}{s['floor']['steps'].get(step, 0):>9.2f}"
              f"{s['tool']['steps'].get(step, 0):>13.2f}")
    print(f"downtime: ella-deploy / procedure {r['downtime_vs_procedure']:.2f}, ella-deploy - floor "
          f"{r['downtime_over_floor_seconds']:+.2f}s; whole release: ella-deploy / procedure "
          f"{r['wall_vs_procedure']:.2f}; ansible-runner runs per release {row['runner_runs_per_release']:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,4000", help="generated data per run, MB (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (default %(default)s)")
    parser.add_argument("--growth", default="0,2,6", help="extra ELLA VMs to measure status and a release with "
                        "(default %(default)s: 2, 4 and 8 hosts; empty to skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    states = Sandbox().status()
    if not states or any(row["state"] != "running" for row in states):
        raise SystemExit("the sandbox is not up: .venv/bin/ella-deploy sandbox up")

    sizes = [measure_size(int(mb), args.rounds) for mb in args.sizes.split(",") if mb.strip()]

    # A no-op release (the version that runs), status and check, on the released environment.
    Sandbox().reset("sandbox")
    tool_release()
    noop = timed("release", TO, "--yes", "--skip-staging-check")
    status = timed("status", runs=5)
    check = timed("check", runs=3)
    grown = growth([int(n) for n in args.growth.split(",") if n.strip()])
    Sandbox().reset("sandbox")

    result = {
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"hostname": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "release": f"ELLA {FROM} -> {TO} (2 migrations, configuration schema change)",
        "sizes": sizes, "noop_release_seconds": noop, "status_seconds": status, "check_seconds": check,
        "growth": grown,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"release-{stamp}.json", "release.json"):
        (args.out / name).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    for row in sizes:
        print_size(row)
    print(f"\nno-op release {median(noop):.2f}s   status {median(status):.2f}s   check {median(check):.2f}s")
    for row in grown:
        print(f"{row['ella_hosts']} ELLA hosts: status {median(row['status_seconds']):.2f}s, "
              f"release wall {row['release_wall']:.2f}s, downtime {row['release_downtime']:.2f}s")
    print(f"\nJSON: {args.out / 'release.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
