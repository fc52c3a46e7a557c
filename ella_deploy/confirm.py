"""The confirmation before every command that stops or moves ELLA or writes to its database.

One rule for all of them (release, start, stop, restart, failover, failback, recover,
db-task --commit, a writing `cli`, broadcast new/deactivate): say what will happen, then
ask for the environment's name. `--yes` skips the question (CI); without a terminal and
without `--yes` the command is refused (exit 75) before anything is touched. The sandbox
inventories (`sandbox`, `sandbox-staging`: the embedded default for trying the tool) are
never asked about; every other inventory, including a path to one, is.

The descriptions read only the command line and the inventory's files: nothing is asked of
a host before the operator said yes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from ella_deploy import paths
from ella_deploy.errors import EllaDeployError, ExitCode

SANDBOX_INVENTORIES = ("sandbox", "sandbox-staging")


def is_sandbox(inventory: Path) -> bool:
    return inventory.resolve() in {(paths.INVENTORY_DIR / name).resolve() for name in SANDBOX_INVENTORIES}


def environment_name(inventory: Path) -> str:
    """The name the operator types: the inventory's `ella_environment`, else its folder's name."""
    named = paths.inventory_setting(inventory, "ella_environment") if inventory.is_dir() else None
    return str(named or (inventory.name if inventory.is_dir() else inventory.stem))


def ask_on_stderr(prompt: str) -> str:
    """The question on stderr (stdout may be a file or a pipe for the command's result), the
    answer read from the terminal."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return input()


def require(command: str, inventory: Path, question: str, details: Sequence[str] = (), *, yes: bool = False,
            environment: str | None = None, ask: Callable[[str], str] = ask_on_stderr,
            stream: IO[str] | None = None) -> None:
    """Go on only when the operator typed the environment's name (or gave --yes, or it is the sandbox).

    `question` is what the command will do, as a question ("Stop ELLA on every host of prod?");
    `details` are the lines shown above it."""
    if yes or is_sandbox(inventory):
        return
    if not sys.stdin.isatty():
        raise EllaDeployError(f"{command}: no terminal to confirm on; pass --yes to {command} without asking",
                              ExitCode.REFUSED)
    name = environment or environment_name(inventory)
    stream = stream or sys.stderr
    for line in details:
        print(line, file=stream)
    stream.flush()
    try:
        answer = ask(f"{question} Type the environment name to go on: ")
    except EOFError:
        answer = ""
    if answer.strip() != name:
        raise EllaDeployError(f"{command}: not confirmed; nothing was changed", ExitCode.REFUSED)


# ---- What each command will do, said before it does it ---------------------------------------

def _hosts(inventory: Path) -> list[str]:
    try:
        return paths.inventory_hosts(inventory)
    except Exception:  # noqa: BLE001 - a description must not fail the command; the run will say
        return []


def _primary(inventory: Path) -> str:
    primary = paths.inventory_setting(inventory, "ella_primary_host") if inventory.is_dir() else None
    return str(primary) if primary else "the inventory's primary"


def control(action: str, inventory: Path, host: str | None = None, to: str | None = None,
            fenced: Sequence[str] = ()) -> tuple[str, list[str]]:
    """(question, details) of start, stop, restart, failover, failback."""
    environment = environment_name(inventory)
    hosts = _hosts(inventory)
    others = ", ".join(h for h in hosts if h != to) or "the host that runs it"
    target = host or _primary(inventory)
    if action == "stop":
        where = host or f"every host of {environment} ({', '.join(hosts)})"
        question = f"Stop ELLA on {where}?"
        details = [f"{environment}: ELLA is stopped on {where}, supervised or not.",
                   "Users cannot work until `ella-deploy start`."]
    elif action == "start":
        question = f"Start ELLA on {target} ({environment})?"
        details = [f"{environment}: ELLA starts on {target} if the single-active guard finds no other host "
                   "running it (reachable, no process, no database session)."]
    elif action == "restart":
        question = f"Restart ELLA on {target} ({environment})?"
        details = [f"{environment}: ELLA is stopped on {target} and started there again: users lose it meanwhile."]
    elif action == "failover":
        question = f"Move ELLA to {to or 'the other host'} ({environment})?"
        details = [f"{environment}: ELLA is stopped where it runs ({others}), proven stopped, then started on "
                   f"{to or 'the other host'} with the same image and configuration: users lose it meanwhile."]
    else:
        question = f"Move ELLA back to {_primary(inventory)} ({environment})?"
        details = [f"{environment}: ELLA is stopped where it runs, proven stopped, then started on the primary "
                   f"{_primary(inventory)}: users lose it meanwhile."]
    if fenced:
        details.append(f"You declare {', '.join(fenced)} fenced (VM off): counted as stopped; audited.")
    return question, details


def recover(inventory: Path, keep_new: str = "") -> tuple[str, list[str]]:
    environment = environment_name(inventory)
    if keep_new:
        return (f"Keep the new version of the interrupted release on {environment}?",
                [f"{environment}: the new version is declared live (\"{keep_new}\", audited) and started after the "
                 "guard if it does not serve; the release is finished and its rollback point kept until `accept`. "
                 "Nothing is rolled back."])
    return (f"Recover the interrupted release on {environment}?",
            [f"{environment}: the release journal and the deploy lock decide: a release that never served is "
             "rolled back (the database restored from the rollback point if it was written, the previous "
             "version started after the guard); one that went live is finished. ELLA may stop and start."])


def db_task(inventory: Path, task: dict[str, object]) -> tuple[str, list[str]]:
    environment = environment_name(inventory)
    reviewers = ", ".join(map(str, (task.get("review") or {}).get("reviewers") or [])) or "?"  # type: ignore[union-attr]
    statements = len(task.get("statements") or [])  # type: ignore[arg-type]
    return (f"Commit {task['label']} to {environment}'s database?",
            [f"{environment}: the database is backed up, then {task['label']} (sha256 {str(task['sha256'])[:12]}…, "
             f"{statements} statement{'s' if statements != 1 else ''}, reviewed by {reviewers}) runs in one "
             "transaction and is COMMITTED if every statement succeeds."])


def ella_cli(inventory: Path, args: Sequence[str]) -> tuple[str, list[str]]:
    environment = environment_name(inventory)
    shown = " ".join(args)
    if list(args[:2]) == ["broadcast", "new"]:
        return (f"Post this broadcast to every user of {environment}?",
                [f"{environment}: ELLA shows the banner \"{' '.join(args[2:])}\" to every user until it is "
                 "deactivated."])
    if list(args[:2]) == ["broadcast", "deactivate"]:
        return (f"Take broadcast {' '.join(args[2:])} down on {environment}?",
                [f"{environment}: the banner {' '.join(args[2:])} is no longer shown."])
    return (f"Run `ella-cli {shown}` on {environment}?",
            [f"{environment}: `ella-cli {shown}` runs in the live image on the host that runs ELLA and may "
             "write to its database (audited)."])
