"""`psql`: the read-only login reads everything and writes nothing, whatever the session sets."""

from __future__ import annotations


from tests.conftest import run_cli
from tests.sandbox.conftest import EllaUser


def test_psql_reads_every_table_and_cannot_write(fresh):
    EllaUser(fresh).report_errors(3, "psql")
    read = run_cli("--inventory", "sandbox", "psql", "-c",
                   "SELECT count(*) AS n, current_user FROM uiexception")
    assert read.returncode == 0, read.stderr
    assert [cell.strip() for cell in read.stdout.splitlines()[2].split("|")] == ["3", "ella_readonly"]

    # One-shot write: refused by privileges, not only by the read-only default.
    write = run_cli("--inventory", "sandbox", "psql", "-c",
                    "BEGIN READ WRITE; UPDATE uiexception SET location = 'x'; COMMIT")
    assert write.returncode == 2
    assert "permission denied for table uiexception" in write.stderr

    # A piped session that switches the read-only default off first still cannot write.
    script = ("SET default_transaction_read_only = off;\n"
              "SHOW default_transaction_read_only;\n"
              "INSERT INTO broadcast (message) VALUES ('written by the read-only login');\n")
    piped = run_cli("--inventory", "sandbox", "psql", input=script)
    assert piped.returncode == 2
    assert " off" in piped.stdout
    assert "permission denied for table broadcast" in piped.stderr
    created = run_cli("--inventory", "sandbox", "psql", input="SET default_transaction_read_only = off;\n"
                                                               "CREATE TABLE scratch (x int);\n")
    assert "permission denied for schema public" in created.stderr

    # psql's password file holds the read-only login alone: no way over to ELLA's own login.
    switched = run_cli("--inventory", "sandbox", "psql",
                       input="\\c - ella\nINSERT INTO broadcast (message) VALUES ('x');\n")
    assert switched.returncode == 2 and "no password supplied" in switched.stderr
    assert fresh.psql("SELECT count(*) FROM broadcast;") == "0"
    assert fresh.psql("SELECT count(*) FROM uiexception WHERE location = 'x';") == "0"
    assert fresh.psql("SELECT to_regclass('public.scratch') IS NULL;") == "t"
    # The login really has no rights of its own.
    flags = fresh.psql("SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles "
                       "WHERE rolname = 'ella_readonly';")
    assert flags == "f|f|f|f"


def test_psql_bad_input_touches_nothing(sandbox):
    assert run_cli("--inventory", "sandbox", "psql", "-c", " ").returncode == 64
    unknown = run_cli("--inventory", "sandbox", "psql", "--host", "p22-nope")
    assert unknown.returncode == 64 and "'p22-nope' is not an ELLA host of this inventory" in unknown.stderr
