"""Mutation testing of ella-deploy's safety rules (issue #11): how many single-point bugs in
each rule the fast tests catch. `scripts/mutation` runs it; tests/unit/MUTATION.md explains
every mutant that survives.

Two engines, because of how the files are loaded:
- mutmut 3 for the rules in ella_deploy/ (imported as ella_deploy.*, which mutmut's
  trampolines need);
- for ansible/plugins/module_utils/ella_lock.py and ansible/plugins/filter/ella.py, which
  Ansible (and so their tests) load by path under other names, a probe of its own: mutmut
  records their tests under those names and so finds no test for any of their mutants. The
  probe writes each mutant into a copy of the tree and runs the tests in a fresh pytest.

The probe's mutants (one change each, module level included):
  comparison flips      == !=, < >=, > <=, in / not in, is / is not
  boolean flips         and / or
  `not` removal         not x -> x
  constant changes      True/False swapped, a number n -> n + 1, a string compared, looked
                        up or listed in a module constant -> another string (messages are
                        left alone)
  return-value changes  return x -> return None
"""

from __future__ import annotations

import argparse
import ast
import copy
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a test run needs from the tree.
COPIED = ["ella_deploy", "ansible/plugins", "tests", "pyproject.toml"]

FLIPPED_COMPARISONS = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE,
                       ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
SYMBOLS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">", ast.LtE: "<=", ast.In: "in",
           ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.And: "and", ast.Or: "or"}


@dataclass(frozen=True)
class Mutant:
    number: int
    line: int
    change: str
    source: str


@dataclass
class Result:
    number: int
    line: int
    change: str
    outcome: str  # killed, survived, timeout
    seconds: float


def _compared_strings(tree: ast.AST) -> set[int]:
    """ids of string constants whose value decides something: compared, tested for membership,
    or a key looked up (x["key"], x.get("key")); messages and docstrings are not among them."""
    chosen: set[int] = set()

    def strings_in(node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            chosen.add(id(node))
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            for element in node.elts:
                strings_in(element)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("frozenset", "set"):
            for argument in node.args:
                strings_in(argument)

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                strings_in(operand)
        elif isinstance(node, ast.Subscript):
            strings_in(node.slice)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "startswith", "endswith", "pop", "setdefault") and node.args):
            strings_in(node.args[0])
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets):
            strings_in(node.value)  # module constants: sets of states, phases, commands
    return chosen


def _in_fstring(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside.update(id(child) for child in ast.walk(node))
    return inside


def _changes(node: ast.AST, compared: set[int], fstring: set[int]) -> list[tuple[str, ast.AST | None]]:
    """(description, replacement node) for each single-point mutant of `node`; the replacement
    stands in for `node` itself."""
    found: list[tuple[str, ast.AST | None]] = []
    if isinstance(node, ast.Compare):
        for index, operator in enumerate(node.ops):
            flipped = FLIPPED_COMPARISONS.get(type(operator))
            if flipped:
                changed = copy.deepcopy(node)
                changed.ops[index] = flipped()
                found.append((f"{SYMBOLS[type(operator)]} -> {SYMBOLS[flipped]}", changed))
    elif isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        found.append((f"{SYMBOLS[type(node.op)]} -> {SYMBOLS[other]}", ast.BoolOp(op=other(), values=node.values)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        found.append(("not x -> x", node.operand))
    elif isinstance(node, ast.Constant) and id(node) not in fstring:
        value = node.value
        if isinstance(value, bool):
            found.append((f"{value} -> {not value}", ast.Constant(not value)))
        elif isinstance(value, (int, float)):
            found.append((f"{value!r} -> {value + 1!r}", ast.Constant(value + 1)))
        elif isinstance(value, str) and id(node) in compared:
            found.append((f"{value!r} -> {'XX' + value + 'XX'!r}", ast.Constant("XX" + value + "XX")))
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        found.append(("return x -> return None", ast.Return(value=None)))
    return found


def _sites(tree: ast.Module) -> list[tuple[ast.AST, str, ast.AST]]:
    """(node, description, replacement) of every single-point mutant, in a fixed order."""
    compared, fstring = _compared_strings(tree), _in_fstring(tree)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    nodes = sorted((node for node in ast.walk(tree) if hasattr(node, "lineno") and id(node) not in docstrings),
                   key=lambda node: (node.lineno, node.col_offset, -node.end_col_offset))
    return [(node, description, replacement) for node in nodes
            for description, replacement in _changes(node, compared, fstring)]


class _Swap(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target, self.replacement = target, replacement

    def visit(self, node: ast.AST) -> ast.AST:
        return self.replacement if node is self.target else self.generic_visit(node)


def mutants(path: Path) -> list[Mutant]:
    """Every single-point mutant of the file at `path`, as the whole mutated source."""
    source = path.read_text(encoding="utf-8")
    found = []
    for index in range(len(_sites(ast.parse(source)))):
        tree = ast.parse(source)  # a fresh tree per mutant: each changes one node of it
        target, description, replacement = _sites(tree)[index]
        mutated = ast.fix_missing_locations(_Swap(target, replacement).visit(tree))
        found.append(Mutant(index + 1, getattr(target, "lineno", 0), description, ast.unparse(mutated)))
    return found


def _copy_tree(into: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        else:
            shutil.copy2(source, into / name)


def _run_tests(tree: Path, tests: list[str], timeout: float) -> str:
    environment = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    try:
        done = subprocess.run(command, cwd=tree, env=environment, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def probe(path: Path, tests: list[str], jobs: int = 2) -> tuple[list[Result], float]:
    relative = path.resolve().relative_to(ROOT)
    found = mutants(path)
    with tempfile.TemporaryDirectory(prefix="ella-mutation-") as scratch:
        trees = [Path(scratch) / f"tree-{n}" for n in range(jobs)]
        for tree in trees:
            _copy_tree(tree)
        # The baseline runs the unparsed original: the tests must pass on it.
        (trees[0] / relative).write_text(ast.unparse(ast.parse(path.read_text(encoding="utf-8"))), encoding="utf-8")
        started = time.monotonic()
        if _run_tests(trees[0], tests, timeout=600) != "survived":
            raise SystemExit(f"mutation: the tests fail on the unmutated {relative}: fix them first")
        baseline = time.monotonic() - started
        timeout = 10 * baseline + 10
        free = list(trees)

        def run(mutant: Mutant) -> Result:
            tree = free.pop()
            try:
                (tree / relative).write_text(mutant.source, encoding="utf-8")
                begun = time.monotonic()
                outcome = _run_tests(tree, tests, timeout)
                return Result(mutant.number, mutant.line, mutant.change, outcome, round(time.monotonic() - begun, 2))
            finally:
                free.append(tree)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(run, found))
    return results, baseline


# ---- The safety rules and the tests that guard them --------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    path: str
    # mutmut's function names (x_judge, xǁClassǁmethod) to count; empty: the whole file ...
    functions: tuple[str, ...] = ()
    # ... but for these.
    outside: tuple[str, ...] = ()
    # For the probe: the tests to run on each mutant.
    tests: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return "probe" if self.tests else "mutmut"


RULES = [
    Rule("guard", "ella_deploy/guard.py"),
    Rule("versions", "ella_deploy/versions.py"),
    Rule("journal", "ella_deploy/journal.py"),
    # The script checker and what psql is fed; the git review (review, _git, ...) is not in scope.
    Rule("dbtask", "ella_deploy/dbtask.py", outside=("x_review", "x__git", "x__changed_paths", "x__first_line")),
    Rule("release", "ella_deploy/release.py", functions=("x_plan_problems", "x_predict_downtime")),
    Rule("ella_lock", "ansible/plugins/module_utils/ella_lock.py", tests=("tests/unit/test_lock.py",)),
    Rule("filter", "ansible/plugins/filter/ella.py", tests=("tests/unit/test_filters.py",)),
]
# mutmut's outcomes: a timeout is a kill (the mutant hangs where the rule answers).
CAUGHT = {"killed", "timeout", "caught by type check", "segfault"}


def _module(rule: Rule) -> str:
    return rule.path.removesuffix(".py").replace("/", ".")


def _mutmut_patterns(rule: Rule) -> list[str]:
    module = _module(rule)
    return [f"{module}.{function}__mutmut_*" for function in rule.functions] or [f"{module}.*"]


def run_mutmut(rules: list[Rule], jobs: int, fresh: bool) -> dict[str, list[tuple[str, str]]]:
    """rule name -> [(mutant, outcome)] from mutmut (configured in pyproject.toml)."""
    if fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    patterns = [pattern for rule in rules for pattern in _mutmut_patterns(rule)]
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *patterns], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL if not sys.stdout.isatty() else None)
    listed = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    found: dict[str, list[tuple[str, str]]] = {rule.name: [] for rule in rules}
    for line in listed.splitlines():
        name, _, outcome = line.strip().partition(": ")
        for rule in rules:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in _mutmut_patterns(rule)) and not any(
                    fnmatch.fnmatchcase(name, f"{_module(rule)}.{function}__mutmut_*") for function in rule.outside):
                found[rule.name].append((name, outcome))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mutation testing of the safety rules (tests/unit/MUTATION.md).")
    parser.add_argument("rules", nargs="*", metavar="RULE",
                        help=f"only these ({', '.join(rule.name for rule in RULES)}); default: all")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--keep", action="store_true",
                        help="reuse mutmut's earlier results in mutants/ (re-tests only what changed)")
    parser.add_argument("--list", action="store_true", help="only list the probe's mutants")
    parser.add_argument("--json", type=Path, help="write every mutant's outcome here")
    args = parser.parse_args(argv)
    unknown = set(args.rules) - {rule.name for rule in RULES}
    if unknown:
        parser.error(f"unknown rule(s): {', '.join(sorted(unknown))}")
    chosen = [rule for rule in RULES if not args.rules or rule.name in args.rules]
    if args.list:
        for rule in chosen:
            if rule.engine == "probe":
                for mutant in mutants(ROOT / rule.path):
                    print(f"{rule.path}:{mutant.line}  #{mutant.number}  {mutant.change}")
        return 0
    jobs = max(1, args.jobs)
    outcomes: dict[str, list[tuple[str, str]]] = {}
    with_mutmut = [rule for rule in chosen if rule.engine == "mutmut"]
    if with_mutmut:
        outcomes.update(run_mutmut(with_mutmut, jobs, fresh=not args.keep))
    for rule in chosen:
        if rule.engine == "probe":
            print(f"mutation: probing {rule.path} ({len(mutants(ROOT / rule.path))} mutants)", file=sys.stderr)
            results, _ = probe(ROOT / rule.path, list(rule.tests), jobs)
            outcomes[rule.name] = [(f"{rule.path}:{r.line} #{r.number} {r.change}", r.outcome) for r in results]
    print()
    print(f"{'rule':<10} {'engine':<7} {'mutants':>7} {'killed':>7} {'survived':>8} {'untested':>8} {'kill rate':>9}")
    survivors = []
    for rule in chosen:
        results = outcomes.get(rule.name, [])
        killed = sum(outcome in CAUGHT for _, outcome in results)
        survived = [name for name, outcome in results if outcome == "survived"]
        untested = len(results) - killed - len(survived)
        # Untested mutants count as not killed.
        rate = f"{100 * killed / len(results):.1f}%" if results else "-"
        print(f"{rule.name:<10} {rule.engine:<7} {len(results):>7} {killed:>7} {len(survived):>8} {untested:>8} "
              f"{rate:>9}")
        survivors += [(rule, name) for name in survived]
        survivors += [(rule, f"{name} ({outcome})") for name, outcome in results
                      if outcome not in CAUGHT and outcome != "survived"]
    if survivors:
        print("\nnot killed (explained in tests/unit/MUTATION.md; `mutmut show NAME` shows a mutmut mutant):")
        for rule, name in survivors:
            print(f"  {rule.name:<10} {name}")
    if args.json:
        args.json.write_text(json.dumps({name: dict(found) for name, found in outcomes.items()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
