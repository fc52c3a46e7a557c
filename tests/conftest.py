"""Shared fixtures. Sandbox tests share one sandbox per test session: brought up if absent,
removed at the end if this session made it (keep it with ELLA_SANDBOX_KEEP=1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox_access import SandboxAccess

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ella_deploy"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The molecule scenarios run in the background from the start (see molecule_scenarios);
    # their tests come after the others to collect the results. Tests that take the sandbox
    # down run last, after everything that needs it. Everything under tests/sandbox/ needs
    # the sandbox: marked here, by directory, so no file can forget it (an unmarked one ran
    # in the "fast" selection once and provisioned the sandbox from another checkout).
    sandbox_dir = ROOT / "tests" / "sandbox"
    for item in items:
        if sandbox_dir in Path(item.fspath).parents:
            item.add_marker(pytest.mark.sandbox)
    items.sort(key=lambda item: (item.get_closest_marker("destroys_sandbox") is not None,
                                 item.get_closest_marker("molecule") is not None))


@pytest.fixture(scope="session", autouse=True)
def molecule_scenarios(request: pytest.FixtureRequest):
    """Start the selected molecule scenarios at once, in the background; None if none are selected."""
    roles = sorted({item.callspec.params["role"] for item in request.session.items
                    if item.get_closest_marker("molecule") and hasattr(item, "callspec")})
    if not roles:
        yield None
        return
    from ella_deploy.sandbox import Sandbox, image_tag
    from tests.molecule.scenarios import Scenarios, ensure_ella_images

    tag = image_tag()
    Sandbox()._ensure_image(tag)
    ensure_ella_images()
    scenarios = Scenarios(tag, roles)
    yield scenarios
    scenarios.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "destroys_sandbox: takes the sandbox down; runs last")


def run_cli(*args: str, check: bool = False, timeout: float = 600, input: str | None = None,  # noqa: A002
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """ella-deploy as an operator runs it, in a subprocess (stdin: `input`, else none;
    `env`: added to this process's environment)."""
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                            input=input, stdin=None if input is not None else subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"ella-deploy {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def sandbox() -> SandboxAccess:
    access = SandboxAccess()
    # A sandbox this checkout made is kept afterwards; one another checkout left (a CI runner
    # may still see a developer's) is replaced, and removed again at the end.
    existed = access.any_container() and access.state_dir.is_dir()
    up = run_cli("sandbox", "up", "--take-over", timeout=900)
    if up.returncode != 0:
        pytest.fail(f"sandbox up failed:\n{up.stdout}\n{up.stderr}")
    yield access
    if not existed and not os.environ.get("ELLA_SANDBOX_KEEP"):
        run_cli("sandbox", "down")


class Inbox:
    """What a real SMTP server on loopback received (aiosmtpd), envelope by envelope."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp():
    """An SMTP server on 127.0.0.1; the inventories' sandbox mail settings find it by
    ELLA_SANDBOX_SMTP_PORT (the env to give run_cli)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, {"ELLA_SANDBOX_SMTP_PORT": str(port)}
    finally:
        controller.stop()
