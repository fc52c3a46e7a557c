"""Data-fix tasks: the checks `ella-deploy db-task tasks/YYYYMMDD_name/script.sql` makes before any host.

Every production data fix is an SQL script in `tasks/YYYYMMDD_name/`, reviewed by another person.
ella-deploy runs the script itself, statement by statement, in one transaction it controls (rolled
back for a dry run, committed with --commit). This module loads and validates the script and, for
--commit, the review; it touches no host. Every error is one line, raised as EllaDeployError.

Decisions:
- The folder is `YYYYMMDD_name`: a real calendar date (20262511, day and month swapped, is refused),
  then a name of letters, digits, `_` and `-` starting with a letter or digit, in either case.
- Strings follow standard_conforming_strings=on (PostgreSQL's default): a backslash escapes only in
  E'...'. A backslash outside strings, comments and dollar quotes is not SQL, so it is refused as a
  psql meta-command wherever it stands on the line (`\\set`, `\\i`, `\\c`, `\\copy`, `\\gexec`).
- The review record is a `Reviewed-by: Name <email>` trailer on the newest commit that touched the
  task folder, so a change after the review needs a new review. The reviewer adds it, e.g. with
  `git commit --amend --trailer "Reviewed-by: Kari Nordmann <kari@ous-hf.no>"`, or it goes in the
  merge request's squash commit (a trailer on a non-squash merge commit is not seen: git log skips
  merges that bring no change of their own to the folder). At least one reviewer must not be an
  author of any commit that touched the folder.
"""

from __future__ import annotations

import bisect
import codecs
import datetime
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ella_deploy import sqlrun
from ella_deploy.errors import EllaDeployError, ExitCode

TASK_DIR = re.compile(r"^(?P<date>[0-9]{8})_(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\Z")
SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.sql\Z")
# Statements whose first keyword (or first two) manage the transaction ella-deploy owns.
TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"})
TWO_WORD_CONTROL = frozenset({("PREPARE", "TRANSACTION"), ("COMMIT", "PREPARED"), ("ROLLBACK", "PREPARED"),
                              ("START", "TRANSACTION"), ("RELEASE", "SAVEPOINT")})
SUMMARY_LENGTH = 70
NO_TRANSACTIONS = "the script must not manage transactions; ella-deploy runs it in one transaction " \
                  "(rolled back unless --commit)"
REVIEWER = re.compile(r"^(?P<name>[^<>]*?)\s*<(?P<email>[^<>\s]+@[^<>\s]+)>\Z")
GIT_TIMEOUT = 60

# Identifier or keyword (PostgreSQL: letters, digits, _, $ and any non-ASCII), or a number.
_WORD = re.compile(r"[A-Za-z0-9_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_E_STRING_PART = re.compile(r"\\.|'", re.DOTALL)
_META_COMMAND = re.compile(r"\\(?:[A-Za-z]+|.)?", re.DOTALL)


@dataclass(frozen=True)
class Statement:
    """One statement of a script, as written, without its `;`."""

    number: int
    line: int
    text: str

    @property
    def summary(self) -> str:
        """The first line, whitespace collapsed, at most 70 characters; "…" when cut or more lines follow."""
        lines = self.text.splitlines() or [""]
        first = " ".join(lines[0].split())
        if len(first) > SUMMARY_LENGTH or len(lines) > 1:
            return first[:SUMMARY_LENGTH - 1].rstrip() + "…"
        return first


@dataclass(frozen=True)
class TaskScript:
    path: Path
    task_dir: Path
    date: datetime.date
    name: str
    sha256: str
    text: str
    statements: tuple[Statement, ...]

    @property
    def label(self) -> str:
        return f"{self.task_dir.name}/{self.path.name}"


@dataclass(frozen=True)
class Review:
    repo: Path
    commit: str
    authors: tuple[str, ...]
    reviewers: tuple[str, ...]


class _LexError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def _end_of_quoted(text: str, start: int, quote: str, backslash: bool) -> int:
    """The end of the string or quoted identifier opening at `start`; a doubled quote is one quote."""
    i = start + 1
    while True:
        if backslash:
            match = _E_STRING_PART.search(text, i)
            if match is not None and match.group() != "'":  # a backslash escape
                i = match.end()
                continue
            end = -1 if match is None else match.start()
        else:
            end = text.find(quote, i)
        if end < 0:
            kind = "quoted identifier" if quote == '"' else "string"
            raise _LexError(start, f"unterminated {kind}")
        if text.startswith(quote, end + 1):
            i = end + 2
            continue
        return end + 1


def _end_of_comment(text: str, start: int) -> int:
    """The end of the block comment opening at `start`; block comments nest."""
    depth, i = 0, start
    while True:
        match = _COMMENT_EDGE.search(text, i)
        if match is None:
            raise _LexError(start, "unterminated /* comment")
        depth += 1 if match.group() == "/*" else -1
        i = match.end()
        if depth == 0:
            return i


def _tokens(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every token outside comments; `;` is a token of its own."""
    i, length = 0, len(text)
    while i < length:
        char = text[i]
        if char.isspace():
            i += 1
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = length if newline < 0 else newline + 1
        elif text.startswith("/*", i):
            i = _end_of_comment(text, i)
        else:
            end = _end_of_token(text, i)
            yield i, end
            i = end


def _end_of_token(text: str, i: int) -> int:
    char = text[i]
    if char in "'\"":
        return _end_of_quoted(text, i, char, backslash=False)
    if char == "\\":
        meta = _META_COMMAND.match(text, i)
        name = meta.group() if meta else "\\"
        raise _LexError(i, f"psql meta-command {name.strip()} is not allowed: the script must be plain SQL")
    if char == "$":
        dollar = _DOLLAR_QUOTE.match(text, i)
        if dollar is None:  # $1, a positional parameter
            word = _WORD.match(text, i + 1)
            return word.end() if word else i + 1
        close = text.find(dollar.group(), dollar.end())
        if close < 0:
            raise _LexError(i, f"unterminated dollar-quoted string {dollar.group()}")
        return close + len(dollar.group())
    word = _WORD.match(text, i)
    if word is None:
        return i + 1
    if word.group() in ("e", "E") and text.startswith("'", word.end()):
        return _end_of_quoted(text, word.end(), "'", backslash=True)
    return word.end()


def split_statements(text: str, source: str = "script") -> list[Statement]:
    """The statements of a PostgreSQL script; `source` names it in errors (`SOURCE line N: ...`)."""
    newlines = [match.start() for match in re.finditer("\n", text)]

    def line_of(offset: int) -> int:
        return bisect.bisect_left(newlines, offset) + 1

    statements: list[Statement] = []
    first: int | None = None
    last = 0

    def close() -> None:
        if first is not None:
            statements.append(Statement(len(statements) + 1, line_of(first), text[first:last].strip()))

    try:
        for start, end in _tokens(text):
            if text[start] == ";":
                close()
                first = None
                continue
            if first is None:
                first = start
            last = end
    except _LexError as error:
        raise EllaDeployError(f"{source} line {line_of(error.offset)}: {error.message}", ExitCode.USAGE) from None
    close()
    return statements


def _transaction_control(statement: Statement) -> str | None:
    """The transaction-control command the statement starts with, e.g. "COMMIT", or None."""
    words: list[str] = []
    for start, end in _tokens(statement.text):
        words.append(statement.text[start:end].upper())
        if len(words) == 2:
            break
    pair = (words + [""])[:2]
    if (pair[0], pair[1]) in TWO_WORD_CONTROL:
        return f"{pair[0]} {pair[1]}"
    return pair[0] if pair[0] in TRANSACTION_CONTROL else None


def _shown(path: Path | str) -> str:
    """A path for a one-line message: as is, or quoted with escapes if it holds a newline or the like."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def load(path: Path) -> TaskScript:
    """The task script at `path`, checked: folder and file names, plain SQL, no transaction control."""
    resolved = path.resolve()
    task_dir = resolved.parent
    folder = _shown(path.parent if path.parent != Path(".") else resolved.parent)
    shown = _shown(path)
    named = TASK_DIR.match(task_dir.name)
    if named is None:
        raise EllaDeployError(f"{folder}: the task folder must be named YYYYMMDD_name (e.g. 20261125_fix_genepanel)",
                              ExitCode.USAGE)
    digits = named.group("date")
    try:
        date = datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise EllaDeployError(f"{folder}: {digits} is not a date (YYYYMMDD); the task folder must be named "
                              f"YYYYMMDD_name", ExitCode.USAGE) from None
    if not resolved.name.endswith(".sql"):
        raise EllaDeployError(f"{shown}: the task script must be a .sql file", ExitCode.USAGE)
    if not SCRIPT_NAME.match(resolved.name):
        raise EllaDeployError(f"{shown}: the script name must be letters, digits, _ . - (starting with a letter or "
                              f"digit) and end in .sql", ExitCode.USAGE)
    if not resolved.exists():
        raise EllaDeployError(f"{shown}: no such file", ExitCode.USAGE)
    if not resolved.is_file():
        raise EllaDeployError(f"{shown}: not a file", ExitCode.USAGE)
    try:
        data = resolved.read_bytes()
    except OSError as error:
        raise EllaDeployError(f"{shown}: cannot read it: {error.strerror or error}", ExitCode.USAGE) from None
    body = data.removeprefix(codecs.BOM_UTF8)  # an editor's byte-order mark is no SQL
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + len(data) - len(body)
        raise EllaDeployError(f"{shown}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset})",
                              ExitCode.USAGE) from None
    statements = split_statements(text, shown)
    if not statements:
        raise EllaDeployError(f"{shown}: no SQL statements in it", ExitCode.USAGE)
    for statement in statements:
        control = _transaction_control(statement)
        if control:
            raise EllaDeployError(f"{shown} line {statement.line}: {control}: {NO_TRANSACTIONS}", ExitCode.USAGE)
        words = [statement.text[start:end].upper() for start, end in _tokens(statement.text)]
        if words[:1] == ["COPY"] and {"STDIN", "STDOUT"} & set(words):
            # COPY FROM STDIN would read the rest of the run (our COMMIT/ROLLBACK too) as data;
            # COPY TO STDOUT would print rows, which never leave the host.
            raise EllaDeployError(f"{shown} line {statement.line}: COPY ... STDIN/STDOUT is not allowed: "
                                  "load or export data with a table the script fills, or with psql by hand",
                                  ExitCode.USAGE)
    return TaskScript(path=resolved, task_dir=task_dir, date=date, name=named.group("name"),
                      sha256=hashlib.sha256(data).hexdigest(), text=text, statements=tuple(statements))


def _git(task_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The repository is the task folder's, whatever the caller's environment points git at.
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")}
    environment.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    command = ["git", "-C", str(task_dir), "-c", "log.showSignature=false", *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=GIT_TIMEOUT)
    except FileNotFoundError:
        raise EllaDeployError("git is not installed: --commit needs it to check the review",
                              ExitCode.ENVIRONMENT) from None
    except subprocess.TimeoutExpired:
        raise EllaDeployError(f"git {args[0]} in {task_dir} did not answer in {GIT_TIMEOUT} s",
                              ExitCode.ENVIRONMENT) from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def _changed_paths(porcelain: str) -> list[str]:
    """The paths of `git status --porcelain -z` output (a rename's old path is skipped)."""
    fields, paths = porcelain.split("\0"), []
    index = 0
    while index < len(fields):
        entry = fields[index]
        index += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC" or entry[1] in "RC":
            index += 1
    return paths


def review(script: TaskScript) -> Review:
    """The review of a task for --commit: committed, clean, its newest commit reviewed by a non-author."""
    label, task_dir = script.label, script.task_dir
    toplevel = _git(task_dir, "rev-parse", "--show-toplevel")
    if toplevel.returncode != 0 or not toplevel.stdout.strip():
        if toplevel.returncode != 0 and "not a git repository" not in toplevel.stderr:
            raise EllaDeployError(f"{label}: git rev-parse failed: {_first_line(toplevel.stderr)}", ExitCode.REFUSED)
        raise EllaDeployError(f"{label} is not in a git repository: --commit needs a committed, reviewed task",
                              ExitCode.REFUSED)
    repo = Path(toplevel.stdout.strip())
    tracked = _git(task_dir, "ls-files", "--error-unmatch", "--", script.path.name)
    if tracked.returncode != 0:
        raise EllaDeployError(f"{label} is not committed in {_shown(repo)}: commit it and have it reviewed",
                              ExitCode.REFUSED)
    status = _git(task_dir, "status", "--porcelain", "-z", "--untracked-files=all", "--", ".")
    if status.returncode != 0:
        raise EllaDeployError(f"{label}: git status failed: {_first_line(status.stderr)}", ExitCode.REFUSED)
    changed = _changed_paths(status.stdout)
    if changed:
        names = [_shown(os.path.relpath(repo / name, task_dir)) for name in changed]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise EllaDeployError(f"{label} has uncommitted changes ({shown}): commit it and have it reviewed again",
                              ExitCode.REFUSED)
    trailers = "%(trailers:key=Reviewed-by,valueonly,unfold,separator=%x1f)"
    newest = _git(task_dir, "log", "-1", f"--format=%H%x00{trailers}", "--", ".")
    if newest.returncode != 0 or "\0" not in newest.stdout:
        raise EllaDeployError(f"{label}: git log failed: {_first_line(newest.stderr)}", ExitCode.REFUSED)
    commit, _, values = newest.stdout.strip().partition("\0")
    reviewers = tuple(value.strip() for value in values.split("\x1f") if value.strip())
    if not reviewers:
        raise EllaDeployError(f"{label}: commit {commit[:12]}, the newest that touched {script.task_dir.name}, has no "
                              f"Reviewed-by: trailer: have another person review it", ExitCode.REFUSED)
    emails = []
    for reviewer in reviewers:
        match = REVIEWER.match(reviewer)
        if match is None:
            raise EllaDeployError(f"{label}: commit {commit[:12]} has a malformed trailer Reviewed-by: {reviewer} "
                                  f"(use Reviewed-by: Name <email>)", ExitCode.REFUSED)
        emails.append(match.group("email").lower())
    history = _git(task_dir, "log", "--format=%ae", "--", ".")
    if history.returncode != 0:
        raise EllaDeployError(f"{label}: git log failed: {_first_line(history.stderr)}", ExitCode.REFUSED)
    authors = tuple(dict.fromkeys(email.strip().lower() for email in history.stdout.splitlines() if email.strip()))
    if all(email in authors for email in emails):
        raise EllaDeployError(f"{label} was reviewed only by its author ({', '.join(dict.fromkeys(emails))}): "
                              f"another person must review it", ExitCode.REFUSED)
    return Review(repo=repo, commit=commit, authors=authors, reviewers=reviewers)



# ---- Running: what psql is fed (sqlrun.py reads what it answers) ----------------------------


def psql_input(script: TaskScript, commit: bool, lock_timeout: str = "5s",
               statement_timeout: str = "15min") -> str:
    """The script wrapped in the one transaction ella-deploy owns, each statement marked.

    The guarantee that nothing but ella-deploy's own ROLLBACK or COMMIT ends the transaction
    comes from PostgreSQL, not from reading the script: psql never parses a statement of the
    script. Each one travels as a dollar-quoted literal (a tag the statement does not contain)
    and runs through EXECUTE in a PL/pgSQL block inside ella-deploy's BEGIN, where PostgreSQL
    refuses any transaction command ("EXECUTE of transaction commands is not implemented") and
    more than one command per string, however the text was written to look. A SELECT's rows go
    nowhere; the row count of each statement comes back through a setting of the transaction.

    lock_timeout keeps a dry run from queueing behind (and in front of) ELLA's users for long.
    """
    # VERBOSITY terse and no notices: psql's errors (which come back) carry no DETAIL or CONTEXT
    # with row values in them, and RAISE NOTICE output stays on the host.
    lines = ["\\set ON_ERROR_STOP on", "\\set VERBOSITY terse", "\\pset pager off", "\\timing on", "BEGIN;",
             "SET LOCAL client_min_messages = warning;",
             f"SET LOCAL lock_timeout = '{lock_timeout}';", f"SET LOCAL statement_timeout = '{statement_timeout}';"]
    for statement in script.statements:
        quote = _dollar_tag(statement.text)
        body = (f" DECLARE n bigint; BEGIN EXECUTE {quote}{statement.text}{quote}; "
                f"GET DIAGNOSTICS n = ROW_COUNT; PERFORM set_config('ella_task.rows', n::text, true); END ")
        block = _dollar_tag(body)
        lines += [
            f"\\echo {sqlrun.MARKER} {statement.number}",
            f"DO {block}{body}{block};",
            "SELECT current_setting('ella_task.rows') AS ella_task_rows \\gset",
            f"\\echo {sqlrun.MARKER} rows {statement.number} {_command(statement.text)} :ella_task_rows",
        ]
    lines += [f"\\echo {sqlrun.MARKER} end", "COMMIT;" if commit else "ROLLBACK;"]
    return "\n".join(lines) + "\n"


def _dollar_tag(text: str) -> str:
    """A dollar-quote tag that closes only where it is put after `text`: it does not occur in
    `text`, nor does `text` end with all of it but its last `$` (which the closing tag's
    first `$` would complete)."""
    import secrets

    while True:
        tag = f"$ella_{secrets.token_hex(6)}$"
        if (text + tag).find(tag) == len(text):
            return tag


def _command(text: str) -> str:
    """The statement's command word, as psql's tag would name it (UPDATE, INSERT, SELECT, ...)."""
    words = re.sub(r"--[^\n]*|/\*.*?\*/", " ", text, flags=re.S).split()
    first = words[0].upper() if words else "?"
    return "SELECT" if first in ("WITH", "VALUES", "TABLE") else re.sub(r"[^A-Z]", "", first) or "?"


def statements_of(script: TaskScript) -> list[dict[str, object]]:
    """What the playbook needs to name each statement's result."""
    return [{"number": s.number, "line": s.line, "summary": s.summary} for s in script.statements]
