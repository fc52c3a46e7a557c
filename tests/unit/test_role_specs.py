"""The conventions of the roles that no linter checks (see STYLE.md, "Roles").

- defaults/main.yml and meta/argument_specs.yml name the same variables, every one with the
  role's prefix, so a misspelt variable fails argument validation instead of being ignored;
- every entry point has its task file, every option a type and a description, and literal
  defaults pass the role's own argument spec (Ansible validates them on every run);
- files named by import_playbook/import_tasks/include_tasks exist, and every tasks_from
  names an entry point, so the role's arguments are validated there too;
- every command/shell task says when it changed something.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES_DIR = ROOT / "roles"
ROLES = sorted(path.name for path in ROLES_DIR.iterdir() if (path / "meta" / "main.yml").is_file())
# Files made of tasks or plays, where command/shell tasks and role inclusions live.
TASK_AND_PLAY_FILES = sorted(
    [
        *ROLES_DIR.glob("*/tasks/*.yml"),
        *ROLES_DIR.glob("*/handlers/*.yml"),
        *(ROOT / "ansible" / "playbooks").rglob("*.yml"),
        *(ROOT / "testbed" / "playbooks").glob("*.yml"),
    ]
)


def actions(*names: str) -> frozenset[str]:
    """The ways a task may name these ansible.builtin actions."""
    return frozenset(f"{prefix}{name}" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for name in names)


COMMAND_MODULES = actions("command", "shell")
INCLUDE_FILE_MODULES = actions("import_playbook", "import_tasks", "include_tasks")
INCLUDE_ROLE_MODULES = actions("import_role", "include_role")
# Keys under which a task or play holds further tasks.
NESTED_TASK_KEYS = ("block", "rescue", "always", "pre_tasks", "tasks", "post_tasks", "handlers")


class _AnsibleYamlLoader(yaml.SafeLoader):
    """safe_load (anchors and merge keys resolved) that also accepts Ansible's tags."""


for _tag in ("!unsafe", "!vault"):
    _AnsibleYamlLoader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))


def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.load(handle, Loader=_AnsibleYamlLoader)  # noqa: S506 - a SafeLoader


def defaults_of(role: str) -> dict[str, Any]:
    path = ROLES_DIR / role / "defaults" / "main.yml"
    return (load_yaml(path) or {}) if path.is_file() else {}


def entry_points_of(role: str) -> dict[str, dict[str, Any]]:
    path = ROLES_DIR / role / "meta" / "argument_specs.yml"
    assert path.is_file(), f"{role}: no meta/argument_specs.yml"
    specs = (load_yaml(path) or {}).get("argument_specs") or {}
    assert specs, f"{role}: meta/argument_specs.yml has no entry points"
    return specs


def options_of(role: str) -> dict[str, dict[str, Any]]:
    """Every option of every entry point (entry points may share options through anchors)."""
    options: dict[str, dict[str, Any]] = {}
    for entry_point in entry_points_of(role).values():
        options.update(entry_point.get("options") or {})
    return options


def is_templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(is_templated(k) or is_templated(v) for k, v in value.items())
    if isinstance(value, list):
        return any(is_templated(item) for item in value)
    return False


def tasks_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every task of a task file, and every play and task of a playbook, blocks descended into."""
    if isinstance(node, list):
        for item in node:
            yield from tasks_in(item)
    elif isinstance(node, dict):
        yield node
        for key in NESTED_TASK_KEYS:
            if key in node:
                yield from tasks_in(node[key])


def task_label(path: Path, task: dict[str, Any]) -> str:
    return f"{path.relative_to(ROOT)}: {task.get('name', '(unnamed task)')!r}"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_name_the_same_variables(role: str) -> None:
    defaults = set(defaults_of(role))
    options = set(options_of(role))
    assert defaults == options, (
        f"{role}: in defaults/main.yml only: {sorted(defaults - options)}; "
        f"in meta/argument_specs.yml only: {sorted(options - defaults)}"
    )


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role: str) -> None:
    unprefixed = sorted(name for name in set(defaults_of(role)) | set(options_of(role))
                        if not name.startswith(f"{role}_"))
    assert not unprefixed, f"{role}: variables without the prefix {role}_: {unprefixed}"


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_has_its_task_file(role: str) -> None:
    tasks = ROLES_DIR / role / "tasks"
    missing = sorted(name for name in entry_points_of(role) if not (tasks / f"{name}.yml").is_file())
    assert not missing, f"{role}: entry points without tasks/<entry point>.yml: {missing}"
    if (tasks / "main.yml").is_file():
        assert "main" in entry_points_of(role), f"{role}: tasks/main.yml has no entry point `main`"


@pytest.mark.parametrize("role", ROLES)
def test_every_option_has_a_type_and_a_description(role: str) -> None:
    incomplete = sorted(
        f"{entry}.{name}"
        for entry, spec in entry_points_of(role).items()
        for name, option in (spec.get("options") or {}).items()
        if not option.get("type") or not option.get("description")
    )
    assert not incomplete, f"{role}: options without type or description: {incomplete}"


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_pass_the_argument_specs(role: str) -> None:
    # Ansible validates the defaults on every run of the role; a wrong one would fail every run.
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    defaults = defaults_of(role)
    errors = []
    for entry, spec in entry_points_of(role).items():
        options = spec.get("options") or {}
        # Templated defaults are validated after templating, in a real run; only literals here.
        literal = {name: value for name, value in defaults.items() if name in options and not is_templated(value)}
        relaxed = {name: {k: v for k, v in option.items() if k != "required"} for name, option in options.items()}
        result = ArgumentSpecValidator(relaxed).validate(literal)
        errors += [f"{entry}: {message}" for message in result.error_messages]
    assert not errors, f"{role}: defaults/main.yml against meta/argument_specs.yml: {errors}"


def test_included_files_exist() -> None:
    missing = []
    for path in TASK_AND_PLAY_FILES:
        for task in tasks_in(load_yaml(path)):
            for module in INCLUDE_FILE_MODULES.intersection(task):
                argument = task[module]
                included = argument.get("file") if isinstance(argument, dict) else argument
                if isinstance(included, str) and not is_templated(included):
                    if not (path.parent / included).is_file():
                        missing.append(f"{task_label(path, task)} includes {included}")
    assert not missing, "included files that do not exist:\n" + "\n".join(missing)


def test_tasks_from_names_an_entry_point() -> None:
    # tasks_from X validates the role's arguments only when X is an entry point.
    wrong = []
    for path in TASK_AND_PLAY_FILES:
        for task in tasks_in(load_yaml(path)):
            for module in INCLUDE_ROLE_MODULES.intersection(task):
                argument = task[module]
                if not isinstance(argument, dict):
                    continue
                role, entry = argument.get("name"), argument.get("tasks_from", "main")
                if not isinstance(role, str) or is_templated(role) or is_templated(entry):
                    continue
                entry = Path(entry).stem if entry.endswith((".yml", ".yaml")) else entry
                if role not in ROLES:
                    wrong.append(f"{task_label(path, task)}: no role {role} in roles/")
                elif entry not in entry_points_of(role):
                    wrong.append(f"{task_label(path, task)}: {role} has no entry point {entry!r}")
    assert not wrong, "role inclusions without argument validation:\n" + "\n".join(wrong)


def test_command_and_shell_tasks_say_when_they_change() -> None:
    silent = []
    for path in TASK_AND_PLAY_FILES:
        for task in tasks_in(load_yaml(path)):
            modules = COMMAND_MODULES.intersection(task)
            if not modules:
                continue
            module_args = task[next(iter(modules))]
            arguments = {**(module_args if isinstance(module_args, dict) else {}), **(task.get("args") or {})}
            free_form = module_args if isinstance(module_args, str) else ""
            declares = (
                "changed_when" in task
                or "creates" in arguments
                or "removes" in arguments
                or any(word.startswith(("creates=", "removes=")) for word in free_form.split())
            )
            if not declares:
                silent.append(task_label(path, task))
    assert not silent, "command/shell tasks without changed_when or creates/removes:\n" + "\n".join(silent)


@pytest.mark.parametrize("module", sorted(path.name for path in (ROOT / "ansible" / "plugins" / "modules").glob("*.py")))
def test_module_documentation_is_yaml_with_every_option(module: str) -> None:
    """ansible-doc and ansible-lint read DOCUMENTATION, EXAMPLES and RETURN as YAML (a `: ` in
    a plain description line breaks them, with only a log line); the options documented are
    the options the module's argument_spec takes."""
    import ast

    source = (ROOT / "ansible" / "plugins" / "modules" / module).read_text()
    texts = {node.targets[0].id: node.value.value for node in ast.parse(source).body
             if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
             and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert "DOCUMENTATION" in texts
    parsed = {name: yaml.safe_load(text) for name, text in texts.items()}
    assert parsed["DOCUMENTATION"]["module"] == module.removesuffix(".py")
    documented = set(parsed["DOCUMENTATION"].get("options") or {})
    for option in documented:
        assert f"{option}=dict(" in source or f'"{option}": ' in source or f"'{option}': " in source, option


# Operations that may run while a release journal is open, and why (the ella_operation wrapper
# refuses every other one under the lock, naming the release and `recover`).
OPEN_RELEASE_ALLOWED = {
    "release": "true",     # its own pre-flight refuses an open journal, saying so
    "recover": "true",     # the open journal is what it acts on
    "rehearsal": "true",   # reads the live database only
    "backup": "true",      # reads the live database only
    "db-task": "{{ not ella_db_task.commit | bool }}",   # a dry run rolls back; a commit is refused
}


def test_every_operation_but_the_allowed_ones_waits_for_recover() -> None:
    # start, stop, failover/failback (restart = stop + start), accept, a writing cli, a db-task
    # commit: none may act on a state recover has not seen yet.
    seen, wrong = set(), []
    for path in TASK_AND_PLAY_FILES:
        for task in tasks_in(load_yaml(path)):
            argument = task.get("ansible.builtin.include_role")
            if not isinstance(argument, dict) or argument.get("name") != "ella_operation":
                continue
            variables = task.get("vars") or {}
            kind = variables.get("ella_operation_kind")
            seen.add(kind)
            allowed = variables.get("ella_operation_open_release")
            if allowed is not None and str(allowed).lower() != OPEN_RELEASE_ALLOWED.get(kind, "<refused>"):
                wrong.append(f"{task_label(path, task)}: {kind} runs while a release is open ({allowed})")
    assert {"start", "stop", "failover", "cli", "accept", "db-task"} <= seen, seen
    assert not wrong, "\n".join(wrong)
    assert defaults_of("ella_operation")["ella_operation_open_release"] is False
