"""Data-fix tasks: names, the SQL splitter, the refusals, and the review in real git repositories."""

from __future__ import annotations

import datetime
import hashlib
import subprocess
from pathlib import Path

import pytest

from ella_deploy import dbtask
from ella_deploy.errors import EllaDeployError, ExitCode

AUTHOR = ("Ola Nordmann", "ola@ous-hf.no")
REVIEWER = ("Kari Nordmann", "Kari@OUS-HF.no")
OTHER = ("Per Hansen", "per@ous-hf.no")
FIX = "UPDATE genepanel SET official = true WHERE name = 'HBOC';\n"


def write_task(root: Path, folder: str = "20261125_fix_genepanel", name: str = "fix.sql", text: str = FIX) -> Path:
    script = root / "tasks" / folder / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text, encoding="utf-8")
    return script


def refused(path: Path, exit_code: ExitCode = ExitCode.USAGE) -> str:
    with pytest.raises(EllaDeployError) as error:
        dbtask.load(path)
    assert error.value.exit_code == exit_code
    assert "\n" not in error.value.message
    return error.value.message


def split_refused(text: str) -> str:
    with pytest.raises(EllaDeployError) as error:
        dbtask.split_statements(text, "t.sql")
    assert error.value.exit_code == ExitCode.USAGE
    assert "\n" not in error.value.message
    return error.value.message


# Names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("folder", "name", "date", "task"), [
    ("20261125_fix_genepanel", "fix.sql", datetime.date(2026, 11, 25), "fix_genepanel"),
    ("20240229_a", "01-step.v2.sql", datetime.date(2024, 2, 29), "a"),
    ("20261231_Fix-Genepanel", "Fix_It.sql", datetime.date(2026, 12, 31), "Fix-Genepanel"),
])
def test_valid_names(tmp_path, folder, name, date, task):
    script = dbtask.load(write_task(tmp_path, folder, name))
    assert script.date == date
    assert script.name == task
    assert script.label == f"{folder}/{name}"
    assert script.path == (tmp_path / "tasks" / folder / name).resolve()
    assert script.task_dir == script.path.parent
    assert script.sha256 == hashlib.sha256(FIX.encode()).hexdigest()
    assert script.text == FIX
    assert script.statements == (dbtask.Statement(1, 1, FIX.strip().rstrip(";")),)


@pytest.mark.parametrize(("folder", "digits"), [("20262511_fix", "20262511"), ("20261332_fix", "20261332"),
                                                ("20250229_fix", "20250229"), ("20261100_fix", "20261100")])
def test_folder_date_must_be_a_calendar_date(tmp_path, folder, digits):
    message = refused(write_task(tmp_path, folder))
    assert message == (f"{tmp_path}/tasks/{folder}: {digits} is not a date (YYYYMMDD); "
                       f"the task folder must be named YYYYMMDD_name")


def test_relative_path_is_named_as_given(tmp_path, monkeypatch):
    write_task(tmp_path, "20262511_fix")
    monkeypatch.chdir(tmp_path)
    assert refused(Path("tasks/20262511_fix/fix.sql")).startswith("tasks/20262511_fix: 20262511 is not a date")


@pytest.mark.parametrize("folder", ["fix_genepanel", "2026112_fix", "202611255_fix", "20261125fix", "20261125_",
                                    "20261125__fix", "20261125_-fix", "20261125_fix genepanel", "20261125_fiks_ø",
                                    "20261125_\u212aelvin",
                                    "2026-11-25_fix"])
def test_bad_folder_names(tmp_path, folder):
    message = refused(write_task(tmp_path, folder))
    assert message == (f"{tmp_path}/tasks/{folder}: the task folder must be named YYYYMMDD_name "
                       f"(e.g. 20261125_fix_genepanel)")


@pytest.mark.parametrize("name", ["fix.txt", "fix.SQL", "fix.sql.bak", "fix"])
def test_script_must_be_sql(tmp_path, name):
    script = write_task(tmp_path, name=name)
    assert refused(script) == f"{script}: the task script must be a .sql file"


def test_newlines_in_names_are_shown_escaped(tmp_path):
    folder = write_task(tmp_path, "20261125_fix\n")
    assert refused(folder) == (f"'{tmp_path}/tasks/20261125_fix\\n': the task folder must be named YYYYMMDD_name "
                               f"(e.g. 20261125_fix_genepanel)")
    script = write_task(tmp_path, name="fix.sql\n")
    assert refused(script) == f"'{script.parent}/fix.sql\\n': the task script must be a .sql file"


@pytest.mark.parametrize("name", [".fix.sql", "-fix.sql", "fix it.sql", "fiks_ø.sql", ".sql"])
def test_bad_script_names(tmp_path, name):
    script = write_task(tmp_path, name=name)
    assert refused(script).startswith(f"{script}: the script name must be letters, digits, _ . -")


def test_a_script_named_from_inside_its_folder_names_the_whole_folder(tmp_path, monkeypatch):
    script = write_task(tmp_path, "20262511_fix")
    monkeypatch.chdir(script.parent)
    assert refused(Path("fix.sql")).startswith(f"{script.parent.resolve()}: 20262511 is not a date")


def test_an_unreadable_script_is_refused(tmp_path, monkeypatch):
    script = write_task(tmp_path)

    def unreadable(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    assert refused(script) == f"{script}: cannot read it: Permission denied"


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "tasks" / "20261125_fix" / "fix.sql"
    assert refused(missing) == f"{missing}: no such file"
    directory = tmp_path / "tasks" / "20261125_fix" / "dir.sql"
    directory.mkdir(parents=True)
    assert refused(directory) == f"{directory}: not a file"


def test_not_utf8(tmp_path):
    script = write_task(tmp_path)
    script.write_bytes(b"SELECT 'caf\xe9';\n")
    assert refused(script) == f"{script}: not UTF-8 text (byte 0xe9 at offset 11)"


def test_byte_order_mark_is_dropped(tmp_path):
    script = write_task(tmp_path)
    script.write_bytes(b"\xef\xbb\xbfSELECT 1;\n")
    loaded = dbtask.load(script)
    assert loaded.statements == (dbtask.Statement(1, 1, "SELECT 1"),)
    assert loaded.sha256 == hashlib.sha256(b"\xef\xbb\xbfSELECT 1;\n").hexdigest()


@pytest.mark.parametrize("text", ["", "\n  \n", "-- only a comment\n", "/* a */ ; ;\n-- b"])
def test_no_statements(tmp_path, text):
    script = write_task(tmp_path, text=text)
    assert refused(script) == f"{script}: no SQL statements in it"


# Splitting --------------------------------------------------------------------------------------


def texts(sql: str) -> list[str]:
    return [statement.text for statement in dbtask.split_statements(sql)]


def test_split_numbers_lines_and_strips():
    sql = "\n-- header\n  SELECT 1;\n\n/* why */\nUPDATE t\n   SET a = 2;  SELECT 3"
    assert dbtask.split_statements(sql) == [
        dbtask.Statement(1, 3, "SELECT 1"),
        dbtask.Statement(2, 6, "UPDATE t\n   SET a = 2"),
        dbtask.Statement(3, 7, "SELECT 3"),
    ]


def test_comments_inside_are_kept_and_trailing_ones_dropped():
    sql = "SELECT a, -- first; not the end\n  b /* c; */ FROM t -- done\n;\n-- trailing; comment\n"
    assert texts(sql) == ["SELECT a, -- first; not the end\n  b /* c; */ FROM t"]


def test_nested_block_comments():
    sql = "/* outer /* inner; */ still comment; */ SELECT 1; SELECT /* a /* b */ c; */ 2;"
    assert dbtask.split_statements(sql) == [dbtask.Statement(1, 1, "SELECT 1"),
                                            dbtask.Statement(2, 1, "SELECT /* a /* b */ c; */ 2")]


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT 'a;b', 'it''s; ok'; SELECT 2", ["SELECT 'a;b', 'it''s; ok'", "SELECT 2"]),
    ("SELECT 'C:\\'; SELECT 2", ["SELECT 'C:\\'", "SELECT 2"]),
    ("SELECT E'it\\'s; fine', e'\\\\'; SELECT 2", ["SELECT E'it\\'s; fine', e'\\\\'", "SELECT 2"]),
    ("SELECT E'a''; b'; SELECT 2", ["SELECT E'a''; b'", "SELECT 2"]),
    ('SELECT "we;ird""col" FROM t; SELECT 2', ['SELECT "we;ird""col" FROM t', "SELECT 2"]),
    ("SELECT $$a;b$$; SELECT 2", ["SELECT $$a;b$$", "SELECT 2"]),
    ("SELECT $fn$ $$; $inner$ ; $fn$; SELECT 2", ["SELECT $fn$ $$; $inner$ ; $fn$", "SELECT 2"]),
    ("SELECT $a$ -- ; /* $a$; SELECT 2", ["SELECT $a$ -- ; /* $a$", "SELECT 2"]),
    ("SELECT '$$'; SELECT $$'$$; SELECT 3", ["SELECT '$$'", "SELECT $$'$$", "SELECT 3"]),
    ("PREPARE q AS SELECT $1, $2; SELECT 2", ["PREPARE q AS SELECT $1, $2", "SELECT 2"]),
    ("SELECT price$; SELECT a$b$c; SELECT 3", ["SELECT price$", "SELECT a$b$c", "SELECT 3"]),
    ("SELECT 'x' -- c ' ;\n; SELECT \"--\"; SELECT '/*'", ["SELECT 'x'", 'SELECT "--"', "SELECT '/*'"]),
    ("SELECT 1;;; ; SELECT 2;", ["SELECT 1", "SELECT 2"]),
    # Doubled quotes at the edges of a string, next to other strings.
    ("SELECT ''; SELECT 2", ["SELECT ''", "SELECT 2"]),
    ("SELECT 'a'''; SELECT 2", ["SELECT 'a'''", "SELECT 2"]),
    ("SELECT 'x',';';SELECT 2", ["SELECT 'x',';'", "SELECT 2"]),
    # Only E'...' (either case) knows backslash escapes; N'...' and the like do not.
    ("SELECT e'it\\'s; fine'; SELECT 2", ["SELECT e'it\\'s; fine'", "SELECT 2"]),
    ("SELECT N'C:\\'; SELECT 2", ["SELECT N'C:\\'", "SELECT 2"]),
    ("SELECT E'x''\\';SELECT 2';SELECT 3", ["SELECT E'x''\\';SELECT 2'", "SELECT 3"]),
    # Identifiers with an X in them; a lone $; two dollar quotes with the same tag.
    ("UPDATE Xref SET a = 1; SELECT 2", ["UPDATE Xref SET a = 1", "SELECT 2"]),
    ("SELECT $;SELECT 2", ["SELECT $", "SELECT 2"]),
    ("SELECT $a$ x $a$; SELECT $a$ y $a$", ["SELECT $a$ x $a$", "SELECT $a$ y $a$"]),
])
def test_semicolons_inside_quotes_and_comments(sql, expected):
    assert texts(sql) == expected


def test_dollar_quoted_body_keeps_lines():
    sql = "SELECT 1;\nDO $body$\nBEGIN\n  RAISE NOTICE 'x;';\nEND\n$body$;\n\nSELECT 2\n"
    statements = dbtask.split_statements(sql)
    assert [(s.number, s.line) for s in statements] == [(1, 1), (2, 2), (3, 8)]
    assert statements[1].text == "DO $body$\nBEGIN\n  RAISE NOTICE 'x;';\nEND\n$body$"


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT 1;\nSELECT 'abc;\n", "t.sql line 2: unterminated string"),
    ("SELECT E'abc\\';\n", "t.sql line 1: unterminated string"),
    ('\n\nSELECT "abc;', "t.sql line 3: unterminated quoted identifier"),
    ("SELECT $x$ abc $y$;", "t.sql line 1: unterminated dollar-quoted string $x$"),
    ("SELECT 1;\nSELECT $x$ abc", "t.sql line 2: unterminated dollar-quoted string $x$"),
    ("SELECT 1;\n/* a /* b */ c;", "t.sql line 2: unterminated /* comment"),
])
def test_unterminated(sql, message):
    assert split_refused(sql) == message


def test_errors_name_the_script_by_default():
    with pytest.raises(EllaDeployError, match="^script line 2: unterminated string$"):
        dbtask.split_statements("SELECT 1;\nSELECT 'a")


def test_summary():
    assert dbtask.Statement(1, 1, "SELECT   1").summary == "SELECT 1"
    assert dbtask.Statement(1, 1, "UPDATE t\nSET a = 1").summary == "UPDATE t…"
    long = dbtask.Statement(1, 1, "UPDATE genepanel SET " + "x" * 100)
    assert len(long.summary) == 70
    assert long.summary == ("UPDATE genepanel SET " + "x" * 100)[:69] + "…"


# Refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("statement", "control"), [
    ("BEGIN", "BEGIN"), ("begin transaction", "BEGIN"), ("START TRANSACTION", "START TRANSACTION"),
    ("COMMIT", "COMMIT"), ("commit work", "COMMIT"), ("END", "END"), ("end transaction", "END"),
    ("ROLLBACK", "ROLLBACK"), ("Rollback To Savepoint s", "ROLLBACK"), ("ABORT", "ABORT"),
    ("SAVEPOINT s", "SAVEPOINT"), ("RELEASE SAVEPOINT s", "RELEASE SAVEPOINT"), ("release s", "RELEASE"),
    ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"), ("COMMIT PREPARED 'x'", "COMMIT PREPARED"),
    ("rollback /* c */ prepared 'x'", "ROLLBACK PREPARED"),
    ("-- leading comment\n/* and /* nested */ one */ COMMIT", "COMMIT"),
])
def test_transaction_control_is_refused(tmp_path, statement, control):
    script = write_task(tmp_path, text=f"UPDATE t SET a = 1;\n\n{statement};\nSELECT 1;\n")
    line = 3 + statement.count("\n")
    assert refused(script) == (f"{script} line {line}: {control}: the script must not manage transactions; "
                               f"ella-deploy runs it in one transaction (rolled back unless --commit)")


def test_transaction_control_without_semicolon_at_the_end(tmp_path):
    script = write_task(tmp_path, text="UPDATE t SET a = 1;\ncommit\n")
    assert refused(script).startswith(f"{script} line 2: COMMIT: the script must not manage transactions")


@pytest.mark.parametrize(("text", "count"), [
    ("DO $$ BEGIN UPDATE t SET a = 1; END $$;", 1),
    ("DO $fix$\nBEGIN\n  IF true THEN UPDATE t SET a = 1; END IF;\nEND\n$fix$ LANGUAGE plpgsql;", 1),
    ("SELECT 'BEGIN; COMMIT;';\n-- COMMIT;\n/* ROLLBACK; */ SELECT \"end\" FROM t;", 2),
    ("PREPARE q AS UPDATE t SET a = $1; EXECUTE q(1); DEALLOCATE q;", 3),
    ("UPDATE t SET begin_date = now(), \"commit\" = 1 WHERE ended;", 1),
    ('"COMMIT";', 1),
])
def test_transaction_words_elsewhere_are_allowed(tmp_path, text, count):
    assert len(dbtask.load(write_task(tmp_path, text=text)).statements) == count


@pytest.mark.parametrize(("text", "line", "command"), [
    ("SELECT 1;\n\n\\set ON_ERROR_STOP on\nSELECT 2;", 3, "\\set"),
    ("  \\i other.sql\n", 1, "\\i"),
    ("SELECT 1;\n\\c ella\n", 2, "\\c"),
    ("\\copy t FROM 'x.csv'\n", 1, "\\copy"),
    ("SELECT 1 \\gexec\n", 1, "\\gexec"),
    ("SELECT 1;\n\\\n", 2, "\\"),
])
def test_meta_commands_are_refused(tmp_path, text, line, command):
    script = write_task(tmp_path, text=text)
    assert refused(script) == (f"{script} line {line}: psql meta-command {command} is not allowed: "
                               f"the script must be plain SQL")


def test_backslashes_in_strings_comments_and_dollar_quotes_are_allowed(tmp_path):
    text = ("SELECT '\\set x';\n-- \\i a.sql\n/* \\c db */ SELECT E'\\\\i', $$\n\\copy\n$$;\n"
            "SELECT \"a\\b\";\n")
    statements = dbtask.load(write_task(tmp_path, text=text)).statements
    assert [(s.number, s.line) for s in statements] == [(1, 1), (2, 3), (3, 6)]


# Review -----------------------------------------------------------------------------------------


@pytest.fixture
def isolated_git(tmp_path, monkeypatch):
    """git without this machine's configuration, and no repository above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                     "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def git(repo: Path, *args: str, who: tuple[str, str] = AUTHOR) -> str:
    name, email = who
    command = ["git", "-C", str(repo), "-c", f"user.name={name}", "-c", f"user.email={email}",
               "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def repository(root: Path) -> tuple[Path, Path]:
    """A repository with a committed task by AUTHOR and an unrelated README: (repo, script)."""
    repo = root / "ella-tasks"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("tasks\n")
    script = write_task(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Fix the HBOC gene panel")
    return repo, script


def sign_off(repo: Path, who: tuple[str, str] = REVIEWER) -> str:
    """The reviewer adds the trailer to the newest commit; its sha."""
    git(repo, "commit", "-q", "--amend", "--no-edit", "--trailer", f"Reviewed-by: {who[0]} <{who[1]}>", who=who)
    return git(repo, "rev-parse", "HEAD")


def review_refused(script: Path) -> str:
    loaded = dbtask.load(script)
    with pytest.raises(EllaDeployError) as error:
        dbtask.review(loaded)
    assert error.value.exit_code == ExitCode.REFUSED
    assert "\n" not in error.value.message
    return error.value.message


def test_review_passes_with_another_reviewer(isolated_git):
    repo, script = repository(isolated_git)
    commit = sign_off(repo)
    review = dbtask.review(dbtask.load(script))
    assert review == dbtask.Review(repo=repo.resolve(), commit=commit, authors=("ola@ous-hf.no",),
                                   reviewers=("Kari Nordmann <Kari@OUS-HF.no>",))
    assert len(review.commit) == 40


def test_review_lists_every_author_and_ignores_commits_elsewhere(isolated_git):
    repo, script = repository(isolated_git)
    (script.parent / "notes.md").write_text("why\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Notes", who=("Per", "PER@ous-hf.no"))
    commit = sign_off(repo)
    (repo / "README.md").write_text("more\n")
    git(repo, "commit", "-q", "-am", "Unrelated", who=OTHER)
    review = dbtask.review(dbtask.load(script))
    assert review.commit == commit
    assert review.authors == ("per@ous-hf.no", "ola@ous-hf.no")


def test_review_with_several_trailers_needs_one_independent_reviewer(isolated_git):
    repo, script = repository(isolated_git)
    message = ("Fix the panel\n\nReviewed-by: Ola Nordmann <ola@ous-hf.no>\n"
               "Reviewed-by: Per Hansen <per@ous-hf.no>\n")
    git(repo, "commit", "-q", "--amend", "-m", message)
    review = dbtask.review(dbtask.load(script))
    assert review.reviewers == ("Ola Nordmann <ola@ous-hf.no>", "Per Hansen <per@ous-hf.no>")


def test_review_refuses_outside_a_repository(isolated_git):
    script = write_task(isolated_git)
    assert review_refused(script) == ("20261125_fix_genepanel/fix.sql is not in a git repository: "
                                      "--commit needs a committed, reviewed task")


def test_review_refuses_an_untracked_script(isolated_git):
    repo, _ = repository(isolated_git)
    sign_off(repo)
    script = write_task(repo, "20261126_other")
    assert review_refused(script) == (f"20261126_other/fix.sql is not committed in {repo.resolve()}: "
                                      f"commit it and have it reviewed")


def test_review_refuses_a_change_after_the_commit(isolated_git):
    repo, script = repository(isolated_git)
    sign_off(repo)
    script.write_text(FIX + "DELETE FROM genepanel;\n")
    assert review_refused(script) == ("20261125_fix_genepanel/fix.sql has uncommitted changes (fix.sql): "
                                      "commit it and have it reviewed again")
    git(repo, "add", "-A")
    assert "has uncommitted changes (fix.sql)" in review_refused(script)


def test_review_refuses_an_untracked_or_deleted_file_in_the_folder(isolated_git):
    repo, script = repository(isolated_git)
    (script.parent / "extra.sql").write_text("DELETE FROM genepanel;\n")
    (script.parent / "data").mkdir()
    (script.parent / "data" / "rows.csv").write_text("a\n")
    sign_off(repo)
    assert review_refused(script) == ("20261125_fix_genepanel/fix.sql has uncommitted changes "
                                      "(data/rows.csv, extra.sql): commit it and have it reviewed again")


def test_review_refuses_a_newest_commit_without_trailer(isolated_git):
    repo, script = repository(isolated_git)
    commit = git(repo, "rev-parse", "HEAD")
    assert review_refused(script) == (f"20261125_fix_genepanel/fix.sql: commit {commit[:12]}, the newest that touched "
                                      f"20261125_fix_genepanel, has no Reviewed-by: trailer: "
                                      f"have another person review it")


def test_review_refuses_a_change_committed_after_the_review(isolated_git):
    repo, script = repository(isolated_git)
    sign_off(repo)
    assert dbtask.review(dbtask.load(script)).reviewers == ("Kari Nordmann <Kari@OUS-HF.no>",)
    script.write_text(FIX + "DELETE FROM genepanel;\n")
    git(repo, "commit", "-q", "-am", "One more thing")
    commit = git(repo, "rev-parse", "HEAD")
    assert review_refused(script).startswith(f"20261125_fix_genepanel/fix.sql: commit {commit[:12]}, the newest "
                                             f"that touched 20261125_fix_genepanel, has no Reviewed-by: trailer")


def test_review_refuses_the_author_as_reviewer(isolated_git):
    repo, script = repository(isolated_git)
    sign_off(repo, ("Ola N.", "OLA@ous-hf.no"))
    assert review_refused(script) == ("20261125_fix_genepanel/fix.sql was reviewed only by its author "
                                      "(ola@ous-hf.no): another person must review it")


def test_review_refuses_a_reviewer_who_authored_an_earlier_commit(isolated_git):
    repo, script = repository(isolated_git)
    script.write_text(FIX + "SELECT 1;\n")
    git(repo, "commit", "-q", "-am", "Kari's change", who=REVIEWER)
    sign_off(repo)
    assert review_refused(script) == ("20261125_fix_genepanel/fix.sql was reviewed only by its author "
                                      "(kari@ous-hf.no): another person must review it")


def test_review_refuses_a_malformed_trailer(isolated_git):
    repo, script = repository(isolated_git)
    git(repo, "commit", "-q", "--amend", "-m", "Fix\n\nReviewed-by: Kari Nordmann\n")
    commit = git(repo, "rev-parse", "HEAD")
    assert review_refused(script) == (f"20261125_fix_genepanel/fix.sql: commit {commit[:12]} has a malformed trailer "
                                      f"Reviewed-by: Kari Nordmann (use Reviewed-by: Name <email>)")


# ---- psql_input / sqlrun.parse_output -------------------------------------------------------

PSQL_OUTPUT = """@@ella-task 1
UPDATE 3
Time: 1.085 ms
@@ella-task 2
(3 rows)
Time: 1,234.500 ms (00:01.235)
@@ella-task 3
INSERT 0 1
Time: 0.498 ms
@@ella-task 4
CREATE INDEX
Time: 3.000 ms
@@ella-task 5
"""


def test_psql_input_wraps_the_script_in_one_transaction(tmp_path):
    import re

    from ella_deploy import sqlrun

    path = tmp_path / "20261125_fix" / "fix.sql"
    path.parent.mkdir()
    path.write_text("UPDATE a SET b = 1 -- why\n  -- more\n  , c = 2 -- a comment ends the statement\n;\n"
                    "SELECT '$ella_x$'")
    script = dbtask.load(path)
    dry = dbtask.psql_input(script, commit=False).splitlines()
    assert dry[:5] == ["\\set ON_ERROR_STOP on", "\\set VERBOSITY terse", "\\pset pager off", "\\timing on", "BEGIN;"]
    assert "SET LOCAL client_min_messages = warning;" in dry
    assert dry[-2:] == [f"\\echo {sqlrun.MARKER} end", "ROLLBACK;"]
    assert dbtask.psql_input(script, commit=True).splitlines()[-1] == "COMMIT;"
    # psql never sees a statement as SQL: each is one dollar-quoted literal run by EXECUTE in
    # a DO block, with a tag that does not occur in it.
    text = "\n".join(dry)
    blocks = re.findall(r"^DO (\$ella_[0-9a-f]+\$) DECLARE n bigint; BEGIN EXECUTE (\$ella_[0-9a-f]+\$)(.*?)\2; "
                        r"GET DIAGNOSTICS n = ROW_COUNT; .*? END \1;$", text, flags=re.S | re.M)
    assert [body for _, _, body in blocks] == [statement.text for statement in script.statements]
    for block, quote, body in blocks:
        assert quote not in body and block not in body + quote
    # Outside the blocks, the only transaction commands are ella-deploy's own.
    outside = re.sub(r"^DO .*?;$", "", text, flags=re.S | re.M)
    assert re.findall(r"^(BEGIN|COMMIT|ROLLBACK)\b", outside, flags=re.M) == ["BEGIN", "ROLLBACK"]
    # Each statement's row count is echoed with its command word for the output parser.
    assert f"\\echo {sqlrun.MARKER} rows 1 UPDATE :ella_task_rows" in dry
    assert f"\\echo {sqlrun.MARKER} rows 2 SELECT :ella_task_rows" in dry


def test_parse_output_reads_tags_rows_times_and_the_failed_statement():
    from ella_deploy import sqlrun

    statements = [{"number": n, "line": n * 2, "summary": f"s{n}"} for n in range(1, 6)]
    results = sqlrun.parse_output(statements, PSQL_OUTPUT)
    assert [(r["number"], r["tag"], r["rows"], r["ms"]) for r in results] == [
        (1, "UPDATE", 3, 1.085), (2, "SELECT", 3, 1234.5), (3, "INSERT", 1, 0.498),
        (4, "CREATE INDEX", None, 3.0), (5, None, None, None)]
    assert results[1]["line"] == 4


def test_output_filter_keeps_no_select_rows():
    import re

    from ella_deploy import sqlrun

    keep = re.compile(sqlrun.OUTPUT_FILTER)
    assert all(keep.search(line) for line in ["@@ella-task 2", "UPDATE 3", "(1 row)", "Time: 0.4 ms", "INSERT 0 1"])
    assert not any(keep.search(line) for line in [" 4f1c2a9e | Diag-0", "-------+----", " name ", "Diag-0"])


@pytest.mark.parametrize("sql", ["COPY analysis FROM STDIN;", "copy analysis (name) from stdin with (format csv);",
                                 "-- export\nCOPY (SELECT * FROM analysis) TO STDOUT;"])
def test_copy_through_psql_is_refused(tmp_path, sql):
    path = tmp_path / "20261125_copy" / "copy.sql"
    path.parent.mkdir()
    path.write_text("SELECT 1;\n" + sql + "\n")
    with pytest.raises(EllaDeployError) as refused:
        dbtask.load(path)
    assert refused.value.exit_code == ExitCode.USAGE
    line = 2 + sql.count("\n")
    assert refused.value.message == (f"{path} line {line}: COPY ... STDIN/STDOUT is not allowed: load or export data "
                                     "with a table the script fills, or with psql by hand")


def test_copy_to_a_file_on_the_server_and_the_word_in_strings_are_allowed(tmp_path):
    path = tmp_path / "20261125_copy" / "copy.sql"
    path.parent.mkdir()
    path.write_text("UPDATE analysis SET name = 'COPY FROM STDIN';\nCOPY analysis TO '/tmp/analysis.csv';\n")
    assert len(dbtask.load(path).statements) == 2


# ---- psql_input: nothing in a statement ends ella-deploy's transaction ------------------------


def dollar_quoted_end(text: str, start: int) -> tuple[str, int]:
    """PostgreSQL's reading of the dollar-quoted string at `start`: (its content, the offset after it).
    As the scanner does: the first `$tag$` equal to the opening one closes it."""
    import re

    opening = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$").match(text, start)
    assert opening is not None, text[start:start + 20]
    tag = opening.group()
    close = text.index(tag, opening.end())
    return text[opening.end():close], close + len(tag)


def executed(line: str) -> tuple[str, str]:
    """The statement the DO block of `line` EXECUTEs, and what follows the DO block on the line."""
    assert line.startswith("DO $")
    body, after = dollar_quoted_end(line, len("DO "))
    prefix = " DECLARE n bigint; BEGIN EXECUTE "
    assert body.startswith(prefix), body
    statement, end = dollar_quoted_end(body, len(prefix))
    assert body[end:] == "; GET DIAGNOSTICS n = ROW_COUNT; PERFORM set_config('ella_task.rows', n::text, true); END "
    return statement, line[after:]


def task_script(tmp_path, text: str) -> dbtask.TaskScript:
    path = tmp_path / "20261125_fix" / "fix.sql"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return dbtask.load(path)


def do_lines(psql: str) -> list[str]:
    # A DO line runs on to the line where its block ends (statements may span lines).
    lines, current = [], None
    for line in psql.split("\n"):
        if current is not None:
            current += "\n" + line
        elif line.startswith("DO $"):
            current = line
        if current is not None and current.endswith("$;"):
            lines.append(current)
            current = None
    return lines


TAG_LIKE = ["SELECT '$ella_$' AS a", "SELECT $ella_0123456789ab$ x $ella_0123456789ab$",
            "SELECT $$ $ella_ $ $$", "SELECT $q$ $ella_aaaaaaaaaaaa $q$", "SELECT 1 AS \"$ella_aaaaaaaaaaaa$\"",
            "UPDATE t SET a = '$ella_aaaaaaaaaaaa$; COMMIT; BEGIN' -- $ella_aaaaaaaaaaaa$\nWHERE b"]


@pytest.mark.parametrize("statement", TAG_LIKE)
def test_a_statement_with_tag_like_text_stays_inside_its_quotes(tmp_path, statement) -> None:
    script = task_script(tmp_path, statement + ";\nSELECT 2;\n")
    psql = dbtask.psql_input(script, commit=False)
    assert [executed(line) for line in do_lines(psql)] == [(statement, ";"), ("SELECT 2", ";")]


@pytest.mark.parametrize("statement", TAG_LIKE + ["SELECT 1 $ella_aaaaaaaaaaaa", "SELECT '$ella_aaaaaaaaaaaa'",
                                                  "SELECT 'x$ella_aaaaaaaaaaaa'"])
def test_even_a_statement_that_guessed_the_random_tag_cannot_end_its_quote(tmp_path, monkeypatch, statement) -> None:
    # The tags are random; should one collide with text in the statement (or end it, so that
    # the closing tag's first `$` completes it), another one is drawn.
    import secrets

    draws = iter(["aaaaaaaaaaaa", "aaaaaaaaaaaa", "bbbbbbbbbbbb", "aaaaaaaaaaaa", "cccccccccccc", "dddddddddddd"])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(draws))
    script = task_script(tmp_path, statement + ";\n")
    [line] = do_lines(dbtask.psql_input(script, commit=True))
    assert executed(line) == (statement, ";")


def test_dollar_tags_are_fresh_and_unlike_the_text(monkeypatch) -> None:
    import secrets

    assert dbtask._dollar_tag("x") != dbtask._dollar_tag("x")
    draws = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(draws))
    assert dbtask._dollar_tag("x $ella_aaaaaaaaaaaa$ y") == "$ella_bbbbbbbbbbbb$"


def test_only_ella_deploys_own_lines_begin_and_end_the_transaction(tmp_path) -> None:
    text = ("UPDATE t SET note = 'COMMIT;\nBEGIN;\nROLLBACK;' WHERE a = 1;\n"
            "SELECT $$\nCOMMIT;\n$$;\nSELECT 'x' /* \nEND;\n */;\n")
    script = task_script(tmp_path, text)
    for commit, end in ((False, "ROLLBACK;"), (True, "COMMIT;")):
        psql = dbtask.psql_input(script, commit=commit)
        lines = psql.split("\n")
        control = [n for n, line in enumerate(lines) if line.strip().upper().rstrip(";") in
                   ("BEGIN", "COMMIT", "ROLLBACK", "END", "ABORT")]
        outside = [lines[n] for n in control if not any(
            n in range(start, start + block.count("\n") + 1) for start, block in
            ((psql[:psql.index(block)].count("\n"), block) for block in do_lines(psql)))]
        assert outside == ["BEGIN;", end], outside
        assert lines[-2] == end and psql.endswith("\n")
        assert [executed(block)[0] for block in do_lines(psql)] == [s.text for s in script.statements]


def test_each_statement_is_marked_and_its_rows_reported(tmp_path) -> None:
    from ella_deploy import sqlrun

    script = task_script(tmp_path, "UPDATE t SET a = 1;\n-- why\nWITH x AS (SELECT 1) SELECT * FROM x;\n"
                                   "/* c */ insert into t values (1);\n")
    lines = dbtask.psql_input(script, commit=False, lock_timeout="2s", statement_timeout="1min").split("\n")
    assert "SET LOCAL lock_timeout = '2s';" in lines and "SET LOCAL statement_timeout = '1min';" in lines
    assert [line for line in lines if line.startswith(f"\\echo {sqlrun.MARKER}")] == [
        f"\\echo {sqlrun.MARKER} 1", f"\\echo {sqlrun.MARKER} rows 1 UPDATE :ella_task_rows",
        f"\\echo {sqlrun.MARKER} 2", f"\\echo {sqlrun.MARKER} rows 2 SELECT :ella_task_rows",
        f"\\echo {sqlrun.MARKER} 3", f"\\echo {sqlrun.MARKER} rows 3 INSERT :ella_task_rows",
        f"\\echo {sqlrun.MARKER} end"]
    assert lines.count("SELECT current_setting('ella_task.rows') AS ella_task_rows \\gset") == 3


def test_timeouts_default_to_five_seconds_for_locks_and_fifteen_minutes_a_statement(tmp_path) -> None:
    lines = dbtask.psql_input(task_script(tmp_path, "SELECT 1;\n"), commit=False).split("\n")
    assert "SET LOCAL lock_timeout = '5s';" in lines and "SET LOCAL statement_timeout = '15min';" in lines


@pytest.mark.parametrize(("statement", "command"), [
    ("/* why\nand how */ UPDATE t SET a = 1", "UPDATE"), ("-- why\ndelete from t", "DELETE"),
    ("VALUES (1)", "SELECT"), ("TABLE t", "SELECT"), ("with x as (select 1) select * from x", "SELECT"),
    ("(SELECT 1) UNION (SELECT 2)", "SELECT"), ("CREATE INDEX i ON t (a)", "CREATE"),
    ("( SELECT 1 )", "?"),  # no command word to name
    # A comment glued to the command word is no part of its name.
    ("delete--why\nfrom t", "DELETE"), ("UPDATE/*c*/t SET a = 1", "UPDATE"),
    ("UPDATE/*why\nhow */t SET a = 1", "UPDATE"),
])
def test_each_statement_is_named_by_its_command(tmp_path, statement, command) -> None:
    from ella_deploy import sqlrun

    psql = dbtask.psql_input(task_script(tmp_path, statement + ";\n"), commit=False)
    assert f"\\echo {sqlrun.MARKER} rows 1 {command} :ella_task_rows" in psql.split("\n")


def test_statements_of_names_each_statement_for_the_playbook(tmp_path) -> None:
    script = task_script(tmp_path, "SELECT 1;\n\nUPDATE t\nSET a = 1;\n")
    assert dbtask.statements_of(script) == [{"number": 1, "line": 1, "summary": "SELECT 1"},
                                            {"number": 2, "line": 3, "summary": "UPDATE t…"}]


def test_parse_output_reads_what_psql_printed_for_the_wrapped_statements() -> None:
    """psql 15's own output for psql_input's text (captured from the sandbox's server): each
    statement's tag is DO, its command and rows come from the echoed line after it."""
    from ella_deploy import sqlrun

    printed = "\n".join([
        "Pager usage is off.", "Timing is on.", "BEGIN", "Time: 0.140 ms", "SET", "Time: 0.069 ms",
        f"{sqlrun.MARKER} 1", "DO", "Time: 11.216 ms", "Time: 0.193 ms", f"{sqlrun.MARKER} rows 1 CREATE 1",
        f"{sqlrun.MARKER} 2", "DO", "Time: 0.508 ms", "Time: 0.048 ms", f"{sqlrun.MARKER} rows 2 UPDATE 3",
        f"{sqlrun.MARKER} 3", "DO", "Time: 0.196 ms", "Time: 0.054 ms", f"{sqlrun.MARKER} rows 3 SELECT 0",
        f"{sqlrun.MARKER} end", "ROLLBACK", "Time: 0.266 ms"])
    statements = [{"number": n, "line": n + 1, "summary": f"s{n}"} for n in (1, 2, 3)]
    assert [(r["number"], r["tag"], r["rows"], r["ms"]) for r in sqlrun.parse_output(statements, printed)] == [
        (1, "CREATE", 1, 11.216), (2, "UPDATE", 3, 0.508), (3, "SELECT", 0, 0.196)]
