"""The Zabbix tests' server: started once per session, only when a test asks for it, and
removed at the end (kept with ELLA_ZBX_KEEP=1). How long it took is printed at the end."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import pytest

from tests.zabbix.server import OwnPostgres, ZabbixServer, ensure_image, image_tag, remove_leftovers

# Zabbix host -> the priority of its test trigger: 4 High (CRIT), 3 Average (WARN),
# 1 Information (listed, OK). Named as the sandbox's hosts, so an inventory's defaults find them.
HOSTS = {"p22-ella-01": 4, "p22-ella-db": 3, "p22-ella-fo-01": 1}

# What the session measured, printed in the terminal summary.
TIMINGS: dict[str, float] = {}


@dataclass(frozen=True)
class Zabbix:
    server: ZabbixServer
    token: str
    hosts: dict[str, int]


@pytest.fixture(scope="session")
def zabbix() -> Zabbix:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run scripts/setup first")
    tag = image_tag()
    started = time.monotonic()
    built = ensure_image(tag)
    if built:
        TIMINGS["image build (cold, debootstrap + podman import)"] = built
    remove_leftovers()
    postgres = OwnPostgres(tag)
    server: ZabbixServer | None = None
    try:
        start = time.monotonic()
        database = postgres.start()
        TIMINGS["PostgreSQL container ready"] = time.monotonic() - start
        start = time.monotonic()
        server = ZabbixServer(tag, database)
        server.start()
        TIMINGS["Zabbix server + API ready (schema loaded into an empty database)"] = time.monotonic() - start
        start = time.monotonic()
        token = server.api_token()
        for host, priority in HOSTS.items():
            server.add_host(host, priority)
        for host in HOSTS:
            server.send(host, 0)  # processed: the server knows the new items
        TIMINGS["token, hosts, items, triggers made; server sees them"] = time.monotonic() - start
        TIMINGS["warm start in all (image cached)"] = time.monotonic() - started - built
        yield Zabbix(server, token, dict(HOSTS))
    finally:
        if not os.environ.get("ELLA_ZBX_KEEP"):
            if server is not None:
                server.remove()
            postgres.remove()
            remove_leftovers()


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook
    if TIMINGS:
        terminalreporter.section("Zabbix test server")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{seconds:7.1f} s  {what}")
