"""The sandbox: production's site as podman containers on this machine.

Hosts, addresses and storage paths are read from `inventories/sandbox*`, so the inventory
is the one description of the sandbox; this module only makes it real. Everything the
sandbox owns is labelled (containers), named (network) or under one state directory
(keys, known_hosts, secrets, shared storage), so `down` can remove exactly that.

ELLA is real: its release images are built from ELLA's own source archives
(../shared/ella, or $ELLA_SOURCES) by testbed/ella-image/build.py, cached by content. One
stand-in takes the place of what Debian 12 does not package: `singularity` on the hosts is
testbed/singularity (see testbed/README.md).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from ella_deploy import paths
from ella_deploy.errors import EllaDeployError, ExitCode

NETWORK = "ella-sandbox"
SUBNET = "10.213.22.0/24"
LABEL = "ella-deploy.sandbox"
CONTAINER_PREFIX = "ella-sandbox-"
IMAGE_REPOSITORY = "localhost/ella-sandbox-host"
INVENTORIES = ("sandbox", "sandbox-staging")
# ELLA's real releases, staged in every environment's archive/releases as ELLA names them.
STAGED_VERSIONS = ("1.16.5", "1.17.0", "1.17.1", "1.17.2")
# What the sandbox runs after `up`: production's state before a release.
INITIAL_VERSION = "1.16.5"
# The site's fixtures (gene panels, user groups, filter configs, users) come from the test data
# of this release's source, into ELLA's data directory (fixtures/).
FIXTURES_FROM = "1.16.5"
# Stops everything ELLA on a sandbox host, however it was started, with no grace (the
# database and the data go anyway). What runs from an image is found by its root mount (the
# first line of /proc/PID/mountinfo: Singularity gives each container a mount namespace whose
# root is the image; root in the VM may not read ns/mnt without CAP_SYS_PTRACE, but may read
# mountinfo), not by its command line: ELLA's runscript is a shell script until it execs
# supervisord, and a name pattern missed it there.
# 1. The program is being stopped (supervisord says STOPPING) before anything is killed: killed
#    while RUNNING, it exited "unexpectedly" and supervisord started it again
#    (autorestart=unexpected). That happened at most stops on a busy machine; the gunicorn and
#    nginx of such a start outlived a reset, held port 3114, and the next start never answered
#    (1 in 15 stop-start cycles), or the half-started program held the stop for stopwaitsecs.
# 2. Everything from an image is killed, again until none is left (ELLA's own supervisord may
#    respawn nginx between the scan and the kill); once the stop has returned, once more.
# 3. The image's FUSE server goes last: a process still running from the image when it goes
#    fails on a stale file handle and logs a traceback, which `check` would then count.
STOP_ELLA = (
    "host_root=$(head -n1 /proc/1/mountinfo); "
    "from_image() {{ for p in /proc/[0-9]*; do n=$(head -n1 $p/mountinfo 2>/dev/null); "
    "[ -z \"$n\" ] || [ \"$n\" = \"$host_root\" ] && continue; "
    "case $(head -c 10 $p/cmdline 2>/dev/null | tr '\\0' ' ') in squashfuse*) continue;; esac; echo ${{p#/proc/}}; done; }}; "
    "kill_all() {{ for _ in $(seq 25); do pkill -9 -f '^Singularity runtime parent'; left=$(from_image); "
    "[ -n \"$left\" ] || break; kill -9 $left 2>/dev/null; sleep 0.2; done; }}; "
    "sctl() {{ runuser -u ella -- supervisorctl -c {config} \"$@\"; }}; "
    "sctl stop all >/dev/null 2>&1 & "
    "for _ in $(seq 50); do sctl status 2>/dev/null | grep -qE ' (RUNNING|STARTING|BACKOFF) ' || break; "
    "sleep 0.1; done; "
    "kill_all; wait; kill_all; "
    "pkill -9 -f '[s]quashfuse -f .*[.]sif /dev/fd/'; true"
)
# Gives a fresh environment its first release (testbed/playbooks/seed.yml).
SEED_PLAYBOOK = paths.TESTBED_DIR / "playbooks" / "seed.yml"
# The sandbox database server's administrative login (inventories/sandbox: ella_db_admin_user).
ADMIN_ROLE = "ella_admin"
# The copies of a database that ella-deploy makes beside it: <db>_<kind>_<time>
# (ansible/plugins/module_utils/ella_pg.py, ella_release_window, rehearse.yml).
COPY_KINDS = ("rollback", "restore", "verify", "replaced", "failed", "rehearsal")
# uid/gid of the service user in the host image (testbed/host-image/build.sh).
SERVICE_UID = 1500

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SandboxHost:
    name: str
    address: str
    # "ella" (an ELLA VM) or "db" (the database server).
    role: str
    # The environment's shared storage: its directory under the state dir and where the
    # host mounts it (the inventory's ella_root). None for the database server.
    storage: str | None = None
    storage_mount: str | None = None

    @property
    def container(self) -> str:
        return CONTAINER_PREFIX + self.name


@dataclass(frozen=True)
class Environment:
    inventory: str
    root: str
    db_name: str
    db_user: str


def _load_yaml(path: Path) -> dict:
    import yaml  # PyYAML comes with ansible-core; not Ansible itself

    with path.open() as handle:
        return yaml.safe_load(handle) or {}


def environments() -> list[Environment]:
    found = []
    for name in INVENTORIES:
        site = _load_yaml(paths.INVENTORY_DIR / name / "group_vars" / "all" / "site.yml")
        found.append(Environment(name, site["ella_root"], site["ella_db_name"], site["ella_db_user"]))
    return found


def hosts() -> list[SandboxHost]:
    """Every sandbox host, from the sandbox inventories."""
    by_name: dict[str, SandboxHost] = {}
    for env in environments():
        inventory = _load_yaml(paths.INVENTORY_DIR / env.inventory / "hosts.yml")
        groups = inventory["all"]["children"]
        for name, hostvars in (groups.get("ella_db_servers", {}).get("hosts") or {}).items():
            by_name[name] = SandboxHost(name, hostvars["ansible_host"], "db")
        for name, hostvars in (groups.get("ella_hosts", {}).get("hosts") or {}).items():
            by_name[name] = SandboxHost(name, hostvars["ansible_host"], "ella", env.inventory, env.root)
        if env.inventory == "sandbox":
            for name, address in extra_hosts().items():
                by_name[name] = SandboxHost(name, address, "ella", env.inventory, env.root)
    return sorted(by_name.values(), key=lambda h: tuple(int(part) for part in h.address.split(".")))


def extra_hosts() -> dict[str, str]:
    """The benchmark's extra ELLA VMs of the sandbox (ELLA_SANDBOX_EXTRA_HOSTS=N), named and
    addressed as inventories/sandbox/extra_hosts.py lists them to Ansible."""
    count = int(os.environ.get("ELLA_SANDBOX_EXTRA_HOSTS") or 0)
    return {f"p22-ella-x{number:02d}": f"10.213.22.{30 + number}" for number in range(1, count + 1)}


def image_tag() -> str:
    """The host image's tag: a hash of its recipe, so a changed recipe means a rebuild."""
    digest = hashlib.sha256()
    recipe = sorted((paths.TESTBED_DIR / "host-image").iterdir()) + [paths.TESTBED_DIR / "debootstrap.sh",
                                                                    paths.TESTBED_DIR / "singularity"]
    for path in recipe:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def _podman(*args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(["podman", *args], capture_output=True, text=True, input=input_text)
    except FileNotFoundError:
        raise EllaDeployError(
            "podman is not installed: run scripts/setup first", ExitCode.ENVIRONMENT
        ) from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise EllaDeployError(
            f"podman {args[0]} failed: {detail[-1] if detail else result.returncode}", ExitCode.ENVIRONMENT
        )
    return result


class Sandbox:
    def __init__(self, state_dir: Path | None = None, progress: Progress | None = None) -> None:
        self.state_dir = state_dir or paths.sandbox_dir()
        self.progress = progress or (lambda _message: None)
        self.hosts = hosts()

    # ----- paths in the state dir ------------------------------------------------------
    @property
    def ssh_dir(self) -> Path:
        return self.state_dir / "ssh"

    def storage_dir(self, storage: str) -> Path:
        return self.state_dir / "storage" / storage

    def secret_path(self, name: str) -> Path:
        return self.state_dir / "secrets" / name

    # ----- lifecycle ---------------------------------------------------------------------
    def up(self, take_over: bool = False) -> dict[str, float]:
        """Create or heal the sandbox; quick and idempotent when it already runs.
        `take_over`: containers another state directory made are removed first (the test
        command does this: a CI runner may still see a developer's sandbox)."""
        timings: dict[str, float] = {}

        def step(name: str, action: Callable[[], None]) -> None:
            self.progress(name)
            started = time.monotonic()
            action()
            timings[name] = round(time.monotonic() - started, 1)

        self._check_owner(take_over=take_over, may_replace=True)
        tag = image_tag()
        step("host image", lambda: self._ensure_image(tag))
        step("keys and secrets", self._ensure_state)
        step("network", self._ensure_network)
        step("containers", lambda: self._ensure_containers(tag))
        step("ssh", self._wait_for_ssh)
        step("database server", self._provision_database)
        # An environment about to be seeded (no golden copy: a new database server, say) gets
        # its fixtures as ELLA's source has them: a test's change to them, which only a reset
        # undoes, must not become what every later reset returns to.
        step("ELLA images", lambda: self._stage_images(
            pristine={env.inventory for env in environments() if not self._has_golden(env)}))
        step("hosts (ansible)", self._configure_hosts)
        step("golden copy", self._ensure_golden)
        return timings

    def down(self, purge_image: bool = False) -> None:
        self._check_owner()
        for container in self._containers():
            _podman("rm", "--force", "--time", "0", container)
        if _podman("network", "exists", NETWORK, check=False).returncode == 0:
            _podman("network", "rm", "--force", NETWORK)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        if purge_image:
            for image in _podman("images", "--quiet", "--filter", f"reference={IMAGE_REPOSITORY}").stdout.split():
                _podman("rmi", "--force", image, check=False)

    def reset(self, inventory: str = "sandbox", database_template: str | None = None) -> None:
        """Back to the state after `up`: INITIAL_VERSION running on the primary, its database
        as the first release left it, no lock, no journal, no backups, no audit log, empty
        logs, only the staged images. From the golden copy `up` keeps (seconds), else by seeding again.
        `database_template`: the database from a template `save_database` made instead (the
        benchmarks' generated data), with the golden copy's storage."""
        self._check_owner()
        env = self._environment(inventory)
        self._stop_ella(env)
        self._drop_databases(env)
        storage = self.storage_dir(env.inventory)
        for relative in ("ella-prod/ella.sif", "ella-prod/data", "deploy", "backups"):
            _remove(storage / relative)
        # ELLA's logs emptied, not removed (the host's supervisord keeps its own open): what
        # `check` reads of the last minutes is then this run's only.
        logs = storage / "ella-prod" / "logs"
        for log in logs.iterdir() if logs.is_dir() else ():
            if log.is_file():
                os.truncate(log, 0)
        staged = {f"ella-release-v{v}.sif" for v in STAGED_VERSIONS}
        for image in (storage / "archive" / "releases").iterdir():
            if image.name not in staged:
                image.unlink()
        self._stage_images()
        golden = self.state_dir / "golden" / env.inventory
        template = database_template or golden_name(env)
        if database_template and not self._database_exists(database_template):
            raise EllaDeployError(f"sandbox reset: no saved database {database_template!r}", ExitCode.USAGE)
        if (golden / "storage.tar").exists() and self._database_exists(template):
            self._psql(f'CREATE DATABASE "{env.db_name}" OWNER "{env.db_user}" TEMPLATE "{template}";\n')
            subprocess.run(["tar", "-C", str(storage), "-xpf", str(golden / "storage.tar")], check=True)
            shutil.chown(storage / "deploy", SERVICE_UID, SERVICE_UID)  # made by tar for deploy/fixtures.json
            self._start_ella(env)
        else:
            self._psql(f'CREATE DATABASE "{env.db_name}" OWNER "{env.db_user}";\n')
            # The hosts keep their configuration (site.yml); only the first release is seeded again.
            self._configure_hosts(only=env.inventory, playbooks=("site.yml", SEED_PLAYBOOK))
            self._ensure_golden(only=env.inventory)

    def save_database(self, inventory: str, name: str) -> None:
        """Keep the environment's database as it is now as a template `name` for
        `reset(database_template=name)`; ELLA is stopped for the copy and started again."""
        env = self._environment(inventory)
        self._stop_ella(env)
        self._psql(f'DROP DATABASE IF EXISTS "{name}";\nCREATE DATABASE "{name}" TEMPLATE "{env.db_name}";\n')
        self._start_ella(env)

    # ----- the golden copy: each environment as its first release left it ----------------------
    def _ensure_golden(self, only: str | None = None) -> None:
        """A copy of each environment right after its first release: its database (a template
        on the server, `golden_<db>`, never touched by ella-deploy, whose copies are named
        <db>_*) and the files of its storage that the first release wrote."""
        from concurrent.futures import ThreadPoolExecutor

        def copy(env: Environment) -> None:
            if self._has_golden(env):
                return
            golden = self.state_dir / "golden" / env.inventory
            storage = self.storage_dir(env.inventory)
            link = storage / "ella-prod" / "ella.sif"
            if (storage / "deploy" / "audit.jsonl").exists() or not link.is_symlink() or \
                    os.readlink(link) != f"../archive/releases/ella-release-v{INITIAL_VERSION}.sif":
                # Not as the first release left it: the next reset seeds again, then copies.
                return
            golden.mkdir(parents=True, exist_ok=True)
            self._stop_ella(env)
            # (A session of an ELLA killed a moment ago may linger: ended, not waited for.)
            self._psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{env.db_name}' "
                       "AND pid <> pg_backend_pid();\n"
                       f'DROP DATABASE IF EXISTS "{golden_name(env)}";\n'
                       f'CREATE DATABASE "{golden_name(env)}" TEMPLATE "{env.db_name}";\n', "-o", "/dev/null")
            subprocess.run(["tar", "-C", str(self.storage_dir(env.inventory)), "-cpf", str(golden / "storage.tar"),
                            "ella-prod/ella.sif", "ella-prod/data", "deploy/fixtures.json"], check=True)
            self._start_ella(env)

        # The environments side by side: each waits mostly on its ELLA stopping and starting.
        with ThreadPoolExecutor() as pool:
            list(pool.map(copy, [env for env in environments() if not only or env.inventory == only]))

    def _has_golden(self, env: Environment) -> bool:
        return (self.state_dir / "golden" / env.inventory / "storage.tar").exists() and \
            self._database_exists(golden_name(env))

    def _environment(self, inventory: str) -> Environment:
        env = next((e for e in environments() if e.inventory == inventory), None)
        if env is None:
            raise EllaDeployError(f"sandbox reset: no sandbox environment {inventory!r}", ExitCode.USAGE)
        return env

    def _stop_ella(self, env: Environment) -> None:
        """Everything ELLA on the environment's hosts, however started: the runtime parents and
        what runs inside the image (a stray ELLA started by a test as well)."""
        from concurrent.futures import ThreadPoolExecutor

        config = f"{env.root}/ops/supervisor/supervisor.cfg"

        def stop(host: SandboxHost) -> None:
            # Not ELLA's graceful stop (seconds): the database and the data go anyway.
            _podman("exec", "--user", "root", host.container, "sh", "-c", STOP_ELLA.format(config=config))

        # Every host of the environment at once.
        with ThreadPoolExecutor() as pool:
            list(pool.map(stop, [host for host in self.hosts if host.storage == env.inventory]))

    def _start_ella(self, env: Environment) -> None:
        """ELLA on the primary, as supervisord starts it, and wait until its API answers."""
        import urllib.request

        primary = next(h for h in self.hosts if h.storage == env.inventory and h.name == _primary(env))
        config = f"{env.root}/ops/supervisor/supervisor.cfg"
        _podman("exec", "--user", "root", primary.container, "runuser", "-u", "ella", "--",
                "supervisorctl", "-c", config, "start", "ella")
        deadline = time.monotonic() + 120
        # Asked before gunicorn has bound its socket, nginx answers 502, and `check` counts
        # those: the API is asked once gunicorn has forked a worker (it binds before that).
        _wait_until(lambda: _podman("exec", primary.container, "sh", "-c",
                                    "[ $(pgrep -c -f '[a]pi.main:app') -ge 2 ]", check=False).returncode == 0,
                    deadline, f"sandbox: ELLA's gunicorn did not start on {primary.name} within 120s")

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://{primary.address}:3114/api/v1/config/", timeout=5) as answer:
                    return answer.status == 200
            except OSError:
                return False

        _wait_until(answers, deadline, f"sandbox: ELLA did not answer on {primary.name} within 120s")

    def _drop_databases(self, env: Environment) -> None:
        """The database and everything a release made beside it (rollback points, scratch copies)."""
        # Only this environment's: another one's database may share the prefix (ella_staging).
        made = "|".join(COPY_KINDS)
        self._psql(f"SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database "
                   f"WHERE datname = '{env.db_name}' OR datname ~ '^{env.db_name}_({made})_' \\gexec\n")

    def _database_exists(self, name: str) -> bool:
        return self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';\n", "-At").strip() == "1"

    def _psql(self, sql: str, *options: str) -> str:
        db_host = next(h for h in self.hosts if h.role == "db")
        return _podman("exec", "--interactive", "--user", "postgres", db_host.container,
                       "psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", *options, input_text=sql).stdout

    def status(self) -> list[dict[str, str]]:
        states = self._container_states()
        return [
            {
                "host": host.name,
                "address": host.address,
                "role": host.role,
                "container": host.container,
                "state": states.get(host.container, "absent"),
            }
            for host in self.hosts
        ]

    # ----- steps ---------------------------------------------------------------------------
    def _ensure_image(self, tag: str) -> None:
        if _podman("image", "exists", tag, check=False).returncode == 0:
            return
        self.progress(f"building {tag} with debootstrap (about a minute)")
        build = paths.TESTBED_DIR / "host-image" / "build.sh"
        result = subprocess.run([str(build), tag], capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise EllaDeployError(f"host image build failed:\n{tail}", ExitCode.ENVIRONMENT)

    def _ensure_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        self.ssh_dir.mkdir(exist_ok=True, mode=0o700)
        client_key = self.ssh_dir / "id_ed25519"
        if not client_key.exists():
            _keygen(client_key, "ella-deploy sandbox operator")
        authorized = self.state_dir / "authorized_keys"
        authorized.mkdir(exist_ok=True)
        (authorized / "deploy").write_text(client_key.with_suffix(".pub").read_text())

        # One host key per host, made here, so known_hosts is pinned before the first
        # connection (no trust on first use, no disabled host key checking).
        known_hosts = []
        for host in self.hosts:
            key_dir = self.state_dir / "hostkeys" / host.name
            key_dir.mkdir(parents=True, exist_ok=True)
            key = key_dir / "ssh_host_ed25519_key"
            if not key.exists():
                _keygen(key, f"root@{host.name}")
            key_type, public_key = key.with_suffix(".pub").read_text().split()[:2]
            # By name and by address: Ansible connects to the address (ansible_host), also when
            # a task is delegated to another host.
            known_hosts.append(f"{host.name},{host.address} {key_type} {public_key}")
        (self.ssh_dir / "known_hosts").write_text("\n".join(known_hosts) + "\n")

        secrets_dir = self.secret_path("x").parent
        secrets_dir.mkdir(exist_ok=True, mode=0o700)
        names = ["supervisor_password", "db_admin_password", "ella_user_password"]
        names += [f"db_password_{env.db_name}" for env in environments()]
        names += [f"db_readonly_password_{env.db_name}" for env in environments()]
        for name in names:
            path = self.secret_path(name)
            if not path.exists():
                path.touch(mode=0o600)
                # (ELLA's password policy wants three of: upper, lower, digit, other)
                path.write_text(secrets.token_urlsafe(24) + ("-Aa1" if name == "ella_user_password" else ""))

        for env in environments():
            storage = self.storage_dir(env.inventory)
            storage.mkdir(parents=True, exist_ok=True)
            shutil.chown(storage, SERVICE_UID, SERVICE_UID)
            storage.chmod(0o755)

    def _ensure_network(self) -> None:
        if _podman("network", "exists", NETWORK, check=False).returncode != 0:
            _podman("network", "create", "--subnet", SUBNET, "--label", LABEL, NETWORK)

    def _ensure_containers(self, tag: str) -> None:
        inspected = self._inspect_containers()
        for host in self.hosts:
            current = inspected.get(host.container)
            if current and current["image"] != tag:
                self.progress(f"{host.name}: host image changed, recreating")
                _podman("rm", "--force", "--time", "0", host.container)
                current = None
            if current is None:
                _podman("run", "--detach", *self._run_arguments(host), tag)
            elif current["state"] == "paused":
                _podman("unpause", host.container)
            elif current["state"] != "running":
                _podman("start", host.container)

    def _run_arguments(self, host: SandboxHost) -> list[str]:
        arguments = [
            "--name", host.container,
            "--hostname", host.name,
            "--label", LABEL,
            "--network", NETWORK,
            "--ip", host.address,
            # catatonit as PID 1 reaps what supervisord and sshd leave behind.
            "--init",
            # FUSE: the singularity stand-in mounts ELLA's squashfs image with squashfuse.
            "--device", "/dev/fuse",
            "--env", f"SANDBOX_ROLE={host.role}",
            "--volume", f"{self.state_dir / 'hostkeys' / host.name}:/etc/ssh/host_keys:ro",
            "--volume", f"{self.state_dir / 'authorized_keys'}:/etc/ssh/authorized_keys:ro",
        ]
        for other in self.hosts:
            if other is not host:
                arguments += ["--add-host", f"{other.name}:{other.address}"]
        if host.storage:
            arguments += ["--volume", f"{self.storage_dir(host.storage)}:{host.storage_mount}"]
        return arguments

    def _wait_for_ssh(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout

        def greets(address: str) -> bool:
            try:
                with socket.create_connection((address, 22), timeout=2) as connection:
                    return connection.recv(64).startswith(b"SSH-")
            except OSError:
                return False

        for host in self.hosts:
            _wait_until(lambda address=host.address: greets(address), deadline,
                        f"{host.name}: sshd did not answer within {timeout:.0f}s", interval=0.2)

    def _provision_database(self) -> None:
        """Roles and databases on the sandbox's server (production's exist already)."""
        db_host = next(h for h in self.hosts if h.role == "db")
        _wait_until(lambda: _podman("exec", db_host.container, "pg_isready", "-q", check=False).returncode == 0,
                    time.monotonic() + 60, f"{db_host.name}: PostgreSQL did not become ready", interval=0.3)
        # The login ella-deploy administers roles with (production: one the site's DBA gives
        # it). It creates the read-only role of `psql`, so it may hand on pg_read_all_data.
        admin_password = self.secret_path("db_admin_password").read_text().strip()
        statements = [
            f"SELECT format('CREATE ROLE %I LOGIN CREATEROLE', '{ADMIN_ROLE}') "
            f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADMIN_ROLE}') \\gexec\n"
            f"ALTER ROLE \"{ADMIN_ROLE}\" PASSWORD '{admin_password}';\n"
            f"GRANT pg_read_all_data TO \"{ADMIN_ROLE}\" WITH ADMIN OPTION;\n"
        ]
        for env in environments():
            if not self._database_exists(env.db_name) or self._psql(
                    "SELECT to_regclass('public.alembic_version') IS NULL;\n", "-At", "-d", env.db_name).strip() == "t":
                self._forget_release(env)
            password = self.secret_path(f"db_password_{env.db_name}").read_text().strip()
            # CREATEDB: backup verification and rehearsals restore into scratch databases.
            statements.append(
                f"SELECT format('CREATE ROLE %I LOGIN CREATEDB', '{env.db_user}') "
                f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{env.db_user}') \\gexec\n"
                f"ALTER ROLE \"{env.db_user}\" PASSWORD '{password}';\n"
                f"SELECT format('CREATE DATABASE %I OWNER %I', '{env.db_name}', '{env.db_user}') "
                f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{env.db_name}') \\gexec\n"
            )
        # The password goes through stdin, never a command line.
        _podman(
            "exec", "--interactive", "--user", "postgres", db_host.container,
            "psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1",
            input_text="".join(statements),
        )

    def _forget_release(self, env: Environment) -> None:
        """The environment's database has no ELLA schema (the server was made anew, its
        container recreated for a new host image) while its storage still says a release ran
        there and its golden copy belongs to a database that is gone: both go, so that the
        seed makes the first release again instead of starting ELLA on an empty database."""
        storage = self.storage_dir(env.inventory)
        if not (storage / "ella-prod" / "ella.sif").is_symlink():
            return
        self.progress(f"{env.inventory}: its database is gone, seeding the first release again")
        self._stop_ella(env)
        for relative in ("ella-prod/ella.sif", "deploy", "backups"):
            _remove(storage / relative)
        _remove(self.state_dir / "golden" / env.inventory)

    def _stage_images(self, pristine: Collection[str] = ()) -> None:
        """ELLA's real releases into every environment's archive/releases, as ELLA publishes
        them (ella-release-vX.Y.Z.sif, no checksum file), and the site's fixtures into ELLA's
        data directory (staged anew for the environments in `pristine`)."""
        built = build_ella_images(STAGED_VERSIONS, progress=self.progress)
        for env in environments():
            storage = self.storage_dir(env.inventory)
            releases = storage / "archive" / "releases"
            for directory in (releases.parent, releases):
                directory.mkdir(exist_ok=True)
                shutil.chown(directory, SERVICE_UID, SERVICE_UID)
            for version in STAGED_VERSIONS:
                source, target = built[version], releases / f"ella-release-v{version}.sif"
                if not target.exists() or target.stat().st_size != source.stat().st_size:
                    copy_image(source, target)
            self._stage_fixtures(storage / "ella-prod" / "data" / "fixtures", pristine=env.inventory in pristine)

    def _stage_fixtures(self, fixtures: Path, pristine: bool = False) -> None:
        """The site's own fixture files (ELLA's layout, /data/fixtures in the image): the test
        data of ELLA's source, as a lab keeps its gene panels, user groups, filter configs.
        Kept when there, unless `pristine`."""
        if pristine:
            _remove(fixtures)
        if (fixtures / "usergroups.json").exists():
            return
        import tarfile

        archive = ella_sources() / f"ella-v{FIXTURES_FROM}.tar.gz"
        prefix = f"ella-v{FIXTURES_FROM}/src/vardb/testdata/"
        wanted = {"usergroups.json", "filterconfigs.json", "users.json"}
        fixtures.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.name.startswith(prefix) or not member.isfile():
                    continue
                relative = member.name[len(prefix):]
                if relative in wanted:
                    target = fixtures / relative
                elif relative.startswith("clinicalGenePanels/") and relative.count("/") == 2:
                    target = fixtures / "genepanels" / relative.split("/", 1)[1]
                else:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source:
                    target.write_bytes(source.read())
        for path in [fixtures.parent.parent, fixtures.parent, *fixtures.rglob("*"), fixtures]:
            shutil.chown(path, SERVICE_UID, SERVICE_UID)

    def _configure_hosts(
        self, only: str | None = None, playbooks: tuple[str | Path, ...] = ("site.yml", SEED_PLAYBOOK)
    ) -> None:
        """The playbooks on each environment, the environments side by side (they share no
        host, only the database server): seeding waits mostly on ELLA making its database."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        inventories = [env.inventory for env in environments() if not only or env.inventory == only]
        if len(inventories) == 1:
            errors = [_configure_environment(inventories[0], playbooks)]
        else:
            # Processes, not threads: a run narrows os.environ while it lasts (runner.py).
            with ProcessPoolExecutor(len(inventories), mp_context=multiprocessing.get_context("fork")) as pool:
                errors = list(pool.map(_configure_environment, inventories, [playbooks] * len(inventories)))
        failed = [error for error in errors if error]
        if failed:
            raise EllaDeployError("; ".join(failed))

    # ----- podman queries ----------------------------------------------------------------
    def _containers(self) -> list[str]:
        listed = _podman("ps", "--all", "--filter", f"label={LABEL}", "--format", "{{.Names}}", check=False)
        return listed.stdout.split()

    def _inspect_containers(self) -> dict[str, dict[str, str]]:
        names = self._containers()
        if not names:
            return {}
        import json

        inspected = json.loads(_podman("container", "inspect", *names).stdout)
        return {
            item["Name"]: {
                "state": "paused" if item["State"].get("Paused") else item["State"]["Status"],
                "image": item["ImageName"],
                # The state directory it was made from: the parent of its hostkeys mount.
                "state_dir": next((str(Path(mount["Source"]).parent.parent) for mount in item.get("Mounts", [])
                                   if mount.get("Destination") == "/etc/ssh/host_keys"), ""),
            }
            for item in inspected
        }

    def _check_owner(self, take_over: bool = False, may_replace: bool = False) -> None:
        """Container names are global to podman, state directories are not: a second checkout
        (another ELLA_SANDBOX_DIR) must not provision, reset or remove the sandbox whose keys,
        secrets and storage live elsewhere. `up` (`may_replace`) removes containers whose
        state directory is gone (orphans), and a live foreign sandbox when told `take_over`."""
        foreign = {name: info["state_dir"] for name, info in self._inspect_containers().items()
                   if info["state_dir"] and Path(info["state_dir"]) != self.state_dir.resolve()}
        if not foreign:
            return
        orphaned = all(not Path(owner).is_dir() for owner in foreign.values())
        if may_replace and (take_over or orphaned):
            owners = ", ".join(sorted(set(foreign.values())))
            self.progress(f"replacing the sandbox of {owners}")
            for container in self._containers():
                _podman("rm", "--force", "--time", "0", container)
            return
        name, owner = next(iter(foreign.items()))
        raise EllaDeployError(
            f"the sandbox container {name} belongs to the state directory {owner}, not "
            f"{self.state_dir}: run from that checkout (or ELLA_SANDBOX_DIR={owner}), "
            "`sandbox down` there first, or `sandbox up --take-over`", ExitCode.REFUSED)

    def _container_states(self) -> dict[str, str]:
        return {name: info["state"] for name, info in self._inspect_containers().items()}


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def golden_name(env: Environment) -> str:
    """The golden copy of an environment's database: not <db>_*, which ella-deploy's own
    copies are named (and reset drops)."""
    return f"golden_{env.db_name}"


def _configure_environment(inventory: str, playbooks: tuple[str | Path, ...]) -> str:
    """Run the playbooks on one sandbox environment; what failed, or ""."""
    from ella_deploy.runner import run_playbook

    for playbook in playbooks:
        result = run_playbook(str(playbook), paths.INVENTORY_DIR / inventory,
                              extravars={"ella_sandbox_initial_version": INITIAL_VERSION})
        if not result.ok:
            return f"{inventory}: {result.playbook} failed: {result.error_summary()}"
    return ""


def _primary(env: Environment) -> str:
    return str(_load_yaml(paths.INVENTORY_DIR / env.inventory / "group_vars" / "all" / "site.yml")["ella_primary_host"])


def _wait_until(ready: Callable[[], bool], deadline: float, failure: str, interval: float = 0.25) -> None:
    """Ask `ready` until it says yes; past `deadline` (time.monotonic()), fail saying `failure`."""
    while not ready():
        if time.monotonic() > deadline:
            raise EllaDeployError(failure)
        time.sleep(interval)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def ella_sources() -> Path:
    """Where ELLA's source archives are: $ELLA_SOURCES, else ../shared/ella beside the project."""
    return Path(os.environ.get("ELLA_SOURCES") or paths.PROJECT_ROOT.parent / "shared" / "ella")


def image_cache() -> Path:
    """Built ELLA images, kept across `sandbox down` (keyed by content): .cache/ella-images."""
    return Path(os.environ.get("ELLA_IMAGE_CACHE") or paths.PROJECT_ROOT / ".cache" / "ella-images")


def build_ella_images(versions, fault: str | None = None, progress: Progress | None = None) -> dict[str, Path]:
    """version -> image file, built from ELLA's source archives by testbed/ella-image/build.py
    (cached by content: instant when built before)."""
    command = [sys.executable, str(paths.TESTBED_DIR / "ella-image" / "build.py"), "--sources", str(ella_sources()),
               "--cache", str(image_cache())]
    if fault:
        command += ["--fault", fault]
    started = time.monotonic()
    process = subprocess.Popen([*command, *versions], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines = []
    for line in process.stderr:
        stderr_lines.append(line.rstrip())
        if progress and time.monotonic() - started > 2:
            progress(line.rstrip())
    stdout = process.stdout.read()
    if process.wait() != 0:
        tail = "\n".join(stderr_lines[-12:])
        raise EllaDeployError(f"building ELLA images failed:\n{tail}", ExitCode.ENVIRONMENT)
    import json

    return {version: Path(path) for version, path in json.loads(stdout).items()}


def copy_image(source: Path, target: Path) -> None:
    """A staged image is the service user's own file, as an upload to archive/releases is."""
    temporary = target.with_name(target.name + ".part")
    subprocess.run(["cp", "--reflink=auto", str(source), str(temporary)], check=True)
    shutil.chown(temporary, SERVICE_UID, SERVICE_UID)
    temporary.chmod(0o644)
    temporary.rename(target)
