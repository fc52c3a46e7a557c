"""A real Zabbix 6.0 (Debian 12's packages) in podman for the tests of `check`'s Zabbix lines.

The image is built by testbed/zabbix/build.sh (debootstrap, `podman import`) and cached by
a hash of its recipe, as the sandbox's host image is. Zabbix keeps its data on a PostgreSQL
server given as a `Database`: by default the tests' own (`OwnPostgres`, container
ella-zbx-pg), later the sandbox's (its address, a login and a database made for Zabbix).
Every container and the network are named ella-zbx-* and removed by `remove()`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECIPE_DIR = Path(__file__).resolve().parents[2] / "testbed" / "zabbix"
IMAGE_REPOSITORY = "localhost/ella-zbx-server"
NETWORK = "ella-zbx"
POSTGRES_CONTAINER = "ella-zbx-pg"
SERVER_CONTAINER = "ella-zbx-server"
# Zabbix's first user, made by its schema.
ADMIN = ("Admin", "zabbix")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()}")
    return result


def image_tag() -> str:
    digest = hashlib.sha256()
    for path in [*sorted(RECIPE_DIR.iterdir()), RECIPE_DIR.parent / "debootstrap.sh"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def ensure_image(tag: str) -> float:
    """Build the image unless cached; the seconds the build took (0.0 when cached)."""
    if podman("image", "exists", tag, check=False).returncode == 0:
        return 0.0
    started = time.monotonic()
    result = subprocess.run([str(RECIPE_DIR / "build.sh"), tag], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError("Zabbix image build failed:\n" + "\n".join(result.stderr.splitlines()[-20:]))
    return time.monotonic() - started


def address_of(container: str, network: str) -> str:
    inspected = json.loads(podman("container", "inspect", container).stdout)[0]
    return inspected["NetworkSettings"]["Networks"][network]["IPAddress"]


def remove_leftovers() -> None:
    """Containers and the network a previous run left (all named ella-zbx-*: ours)."""
    for container in (SERVER_CONTAINER, POSTGRES_CONTAINER):
        podman("rm", "--force", "--time", "0", container, check=False)
    if podman("network", "exists", NETWORK, check=False).returncode == 0:
        podman("network", "rm", "--force", NETWORK, check=False)


@dataclass(frozen=True)
class Database:
    """Where Zabbix keeps its data: a PostgreSQL server reachable from `network`, a login
    that owns `name` (empty or holding Zabbix's schema)."""

    host: str
    port: int
    name: str
    user: str
    password: str
    network: str = NETWORK


class OwnPostgres:
    """PostgreSQL 15 (Debian's) in the Zabbix image's `db` role, with a login and database for Zabbix."""

    def __init__(self, tag: str, network: str = NETWORK, container: str = POSTGRES_CONTAINER) -> None:
        self.tag, self.network, self.container = tag, network, container

    def start(self, timeout: float = 60) -> Database:
        if podman("network", "exists", self.network, check=False).returncode != 0:
            podman("network", "create", self.network)
        podman("run", "--detach", "--name", self.container, "--network", self.network,
               "--env", "ZBX_ROLE=db", self.tag)
        deadline = time.monotonic() + timeout
        while podman("exec", self.container, "pg_isready", "-q", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.container}: PostgreSQL did not start\n"
                                   + podman("logs", self.container, check=False).stderr[-2000:])
            time.sleep(0.2)
        password = secrets.token_hex(16)
        podman("exec", "--user", "postgres", self.container, "psql", "-Xq", "-v", "ON_ERROR_STOP=1",
               "-c", f"CREATE ROLE zabbix LOGIN PASSWORD '{password}'", "-c", "CREATE DATABASE zabbix OWNER zabbix")
        return Database(address_of(self.container, self.network), 5432, "zabbix", "zabbix", password, self.network)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.container, check=False)


@dataclass
class ZabbixServer:
    """Zabbix server and frontend on `database`; its API at `url`."""

    tag: str
    database: Database
    container: str = SERVER_CONTAINER
    url: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    _secrets: Path | None = None
    _session: str = ""

    def start(self, timeout: float = 240) -> None:
        self._secrets = Path(tempfile.mkdtemp(prefix="ella-zbx-"))
        password_file = self._secrets / "db_password"
        password_file.touch(mode=0o600)
        password_file.write_text(self.database.password)
        database = self.database
        podman("run", "--detach", "--name", self.container, "--network", database.network,
               "--env", f"ZBX_DB_HOST={database.host}", "--env", f"ZBX_DB_PORT={database.port}",
               "--env", f"ZBX_DB_NAME={database.name}", "--env", f"ZBX_DB_USER={database.user}",
               "--volume", f"{password_file}:/run/zbx/db_password:ro", self.tag)
        self.url = f"http://{address_of(self.container, database.network)}/zabbix"
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._session = self.api("user.login", {"username": ADMIN[0], "password": ADMIN[1]}, auth=False)
                return
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Zabbix's API did not answer within {timeout} s:\n" + self.logs()) from None
                running = podman("container", "inspect", "--format", "{{.State.Running}}", self.container,
                                 check=False).stdout.strip()
                if running != "true":
                    raise RuntimeError("the Zabbix container stopped:\n" + self.logs()) from None
                time.sleep(0.5)

    def logs(self) -> str:
        result = podman("logs", "--tail", "40", self.container, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def api(self, method: str, params: Any, auth: bool = True) -> Any:
        """One call as Zabbix's Admin (a session, not the token the code under test uses)."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        if auth:
            body["auth"] = self._session
        request = urllib.request.Request(f"{self.url}/api_jsonrpc.php", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json-rpc"})
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def api_token(self, name: str = "ella-deploy check") -> str:
        userid = self.api("user.get", {"output": ["userid"], "filter": {"username": ADMIN[0]}})[0]["userid"]
        tokenid = self.api("token.create", {"name": name, "userid": userid})["tokenids"][0]
        return self.api("token.generate", [tokenid])[0]["token"]

    def add_host(self, host: str, priority: int) -> str:
        """A host with a trapper item `ella.test` and a trigger of `priority` that fires while
        its last value is 1 or more; its hostid."""
        group = self.api("hostgroup.get", {"output": ["groupid"], "filter": {"name": ["Linux servers"]}})[0]
        hostid = self.api("host.create", {"host": host, "groups": [{"groupid": group["groupid"]}]})["hostids"][0]
        self.api("item.create", {"hostid": hostid, "name": "ELLA test value", "key_": "ella.test",
                                 "type": 2, "value_type": 3})
        self.api("trigger.create", {"description": f"ELLA test problem on {host}",
                                    "expression": f"last(/{host}/ella.test)>=1", "priority": priority})
        return hostid

    def send(self, host: str, value: int, timeout: float = 30) -> None:
        """zabbix_sender to the server's trapper; retried until the server knows the item
        (a host made through the API reaches the server's configuration cache within seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            result = podman("exec", self.container, "zabbix_sender", "-v", "-z", "127.0.0.1", "-s", host,
                            "-k", "ella.test", "-o", str(value), check=False)
            if "processed: 1" in result.stdout:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"zabbix_sender {host} ella.test={value} not processed:\n{result.stdout}")
            time.sleep(0.5)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.container, check=False)
        if self._secrets:
            shutil.rmtree(self._secrets, ignore_errors=True)
