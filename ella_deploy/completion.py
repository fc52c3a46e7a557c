"""Shell completion of ella-deploy: commands, options, inventories, hosts, staged versions.

`ella-deploy completion bash|zsh` prints a script; the script asks
`ella-deploy __complete INDEX WORD...` (INDEX: the word being completed, counted after the
program's name) for the candidates, one a line; a line `:files` asks the shell to offer file
names too. The answer comes from this process alone, fast and without a host:

- commands, options and their choices from the CLI's own parser (cli.build_parser);
- inventories from inventories/, hosts from the inventory's hosts.yml (the inventory named on
  the line, else the sandbox);
- versions (release, rehearse, records) from a cache (staged-versions.json in the state
  directory), written when a run lists archive/releases (`release`, `release --check`),
  after `stage`, and by `ella-deploy completion versions --refresh` - the one call that asks
  a host, and only when the operator runs it.

Nothing here imports Ansible.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ella_deploy import paths

FILES = ":files"
# Options and positionals whose values are host names, versions or files.
HOST_DESTS = ("host", "to", "peer_fenced")
VERSION_DESTS = ("version", "rehearse_version", "record_version")
FILE_DESTS = ("image", "sheet", "script", "vault_password_file")

BASH = r"""# ella-deploy completion (bash). In ~/.bashrc:  eval "$(ella-deploy completion bash)"
_ella_deploy() {
    local line files=0
    local -a found=()
    while IFS= read -r line; do
        if [[ $line == :files ]]; then files=1; elif [[ -n $line ]]; then found+=("$line"); fi
    done < <("${COMP_WORDS[0]}" __complete "$((COMP_CWORD - 1))" "${COMP_WORDS[@]:1}" 2>/dev/null)
    COMPREPLY=("${found[@]}")
    if ((files)); then
        compopt -o filenames 2>/dev/null
        local IFS=$'\n'
        COMPREPLY+=($(compgen -f -- "${COMP_WORDS[COMP_CWORD]}"))
    fi
}
complete -F _ella_deploy ella-deploy
"""

ZSH = r"""#compdef ella-deploy
# ella-deploy completion (zsh). In ~/.zshrc, after compinit:  eval "$(ella-deploy completion zsh)"
_ella_deploy() {
    local line files=0
    local -a found
    for line in "${(@f)$("${words[1]}" __complete "$((CURRENT - 2))" "${(@)words[2,-1]}" 2>/dev/null)}"; do
        if [[ $line == :files ]]; then files=1; elif [[ -n $line ]]; then found+=("$line"); fi
    done
    (( ${#found} )) && compadd -Q -a found
    (( files )) && _files
    return 0
}
compdef _ella_deploy ella-deploy
"""


def script(shell: str) -> str:
    return {"bash": BASH, "zsh": ZSH}[shell]


# ---- The staged versions known here ----------------------------------------------------------

def _cache() -> Path:
    return paths.state_dir() / "staged-versions.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_versions(inventory: Path) -> list[str]:
    entry = _read_cache().get(str(inventory.resolve())) or {}
    return [str(v) for v in entry.get("versions") or []]


def remember_versions(inventory: Path, file_names: Iterable[str], replace: bool = True) -> None:
    """Remember the versions of these release files (all of archive/releases, or with
    `replace=False` one more). A cache that cannot be written is no failure: completion is a help."""
    from ella_deploy import progress, versions

    found = set(progress.staged_versions(file_names))
    if not replace:
        found |= set(cached_versions(inventory))
    data = _read_cache()
    data[str(inventory.resolve())] = {"versions": sorted(found, key=versions.parse), "updated": time.time()}
    cache = _cache()
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = cache.with_name(f"{cache.name}.{os.getpid()}")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        temporary.replace(cache)


def refresh_versions(inventory: Path) -> list[str]:
    """Ask the inventory's host which versions are staged (SSH, as `psql` connects)."""
    from ella_deploy import remote

    connection = remote.connect(inventory, None, "completion versions")
    remember_versions(inventory, remote.staged_files(connection))
    return cached_versions(inventory)


# ---- Candidates --------------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # noqa: SLF001
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)  # noqa: SLF001


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and action.option_strings != [] and not isinstance(
        action, (argparse._HelpAction, argparse._VersionAction))  # noqa: SLF001


def _option(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    name = word.split("=", 1)[0]
    return parser._option_string_actions.get(name)  # noqa: SLF001


def _inventory(name: str | None) -> Path | None:
    from ella_deploy.errors import EllaDeployError

    try:
        return paths.resolve_inventory(name or paths.DEFAULT_INVENTORY)
    except EllaDeployError:
        return None


def _values(action: argparse.Action, inventory_name: str | None) -> list[str]:
    """What may follow an option, or stand as a positional."""
    if action.choices:
        return [str(choice) for choice in action.choices]
    if action.dest == "inventory":
        return [*paths.known_inventories(), FILES]
    if action.dest in FILE_DESTS:
        return [FILES]
    inventory = _inventory(inventory_name)
    if inventory is None:
        return []
    if action.dest in HOST_DESTS:
        try:
            return paths.inventory_hosts(inventory)
        except Exception:  # noqa: BLE001 - a broken inventory completes nothing
            return []
    if action.dest in VERSION_DESTS:
        return cached_versions(inventory)
    return []


def candidates(words: Sequence[str], index: int, parser: argparse.ArgumentParser) -> list[str]:
    """What may stand at words[index] (words: the command line after the program's name)."""
    current = words[index] if index < len(words) else ""
    inventory_name: str | None = None
    positionals_seen = 0
    i = 0
    while i < index:
        word = words[i]
        if word == "--":
            return []  # what follows is ella-cli's
        action = _option(parser, word) if word.startswith("-") else None
        if action is not None and _takes_value(action) and "=" not in word:
            if i + 1 == index:
                return _filter(_values(action, inventory_name), current)
            if action.dest == "inventory":
                inventory_name = words[i + 1]
            i += 2
            continue
        if action is not None and action.dest == "inventory":
            inventory_name = word.split("=", 1)[1]
        if not word.startswith("-"):
            subparsers = _subparsers(parser)
            if subparsers is not None and positionals_seen == 0 and word in subparsers.choices:
                parser, positionals_seen = subparsers.choices[word], 0
            else:
                positionals_seen += 1
        i += 1
    if current.startswith("-"):
        options = sorted({option for action in parser._actions for option in action.option_strings  # noqa: SLF001
                          if action.help != argparse.SUPPRESS})
        return _filter(options, current)
    subparsers = _subparsers(parser)
    if subparsers is not None and positionals_seen == 0:
        return _filter([name for name in subparsers.choices if not name.startswith("_")], current)
    positional = [a for a in parser._actions if not a.option_strings  # noqa: SLF001
                  and not isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    if positionals_seen < len(positional):
        return _filter(_values(positional[positionals_seen], inventory_name), current)
    return []


def _filter(found: Iterable[str], prefix: str) -> list[str]:
    return [word for word in found if word == FILES or word.startswith(prefix)]


def complete(argv: Sequence[str], parser: argparse.ArgumentParser) -> int:
    """`ella-deploy __complete INDEX WORD...`: the candidates, one a line. Never fails loudly:
    a shell completion that prints an error would write it into the operator's command line."""
    try:
        index = int(argv[0])
        found = candidates(list(argv[1:]), index, parser)
    except Exception:  # noqa: BLE001
        return 0
    sys.stdout.write("".join(f"{word}\n" for word in found))
    return 0
