"""ella_database (and ella_cli) after converge: the password files, the read-only login,
ELLA 1.16.5's own database, a backup that restores, and the restore that put it back in
place of the database written to since, keeping the one it replaced."""

from __future__ import annotations

import json

import pytest

from ella_molecule import instances, inventory_vars

testinfra_hosts = instances()

# Head of ELLA 1.16.5's migrations (its own migration files; make-production stamps it).
HEAD_1_16_5 = "1675e8d8b078"
BEFORE, AFTER = "molecule: before the backup", "molecule: after the backup"


def psql(host, database: str, query: str) -> str:
    """A query as the server's superuser, over the local socket."""
    return host.check_output("runuser -u postgres -- psql --no-psqlrc -At -d %s -c %s", database, query)


@pytest.fixture
def root(host) -> str:
    return inventory_vars(host)["ella_root"]


def test_password_files_are_private_and_complete(host, root):
    variables = inventory_vars(host)
    # ELLA's login for any database (scratch restores); the read-only login's for ELLA's alone.
    for name, entry in (("pgpass", f"127.0.0.1:5432:*:ella:{variables['ella_db_password']}"),
                        ("pgpass-readonly", f"127.0.0.1:5432:ella:ella_readonly:{variables['ella_db_readonly_password']}")):
        pgpass = host.file(f"{root}/ops/{name}")
        assert (pgpass.user, pgpass.mode) == ("ella", 0o600)
        entries = [line for line in pgpass.content_string.splitlines() if line and not line.startswith("#")]
        assert entries == [entry]


def test_service_user_logs_in_with_the_password_file(host, root):
    result = host.run(
        "runuser -u ella -- env PGPASSFILE=%s psql --no-psqlrc --no-password -At "
        "-d postgresql://ella@127.0.0.1:5432/ella -c 'SELECT current_user'",
        root + "/ops/pgpass",
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "ella"


def readonly(host, root: str, *statements: str):
    """psql as the read-only login, with its own password file, one session."""
    options = " ".join("-c %s" for _ in statements)
    return host.run(
        "runuser -u ella -- env PGPASSFILE=%s psql --no-psqlrc --no-password -At -v ON_ERROR_STOP=1 "
        "-d postgresql://ella_readonly@127.0.0.1:5432/ella " + options, root + "/ops/pgpass-readonly", *statements)


def test_read_only_login_reads_elles_tables_and_writes_nothing(host, root):
    read = readonly(host, root, "SELECT message FROM broadcast")
    assert read.rc == 0, read.stderr
    assert read.stdout.strip() == BEFORE
    # Its sessions are read-only by default...
    write = readonly(host, root, "UPDATE broadcast SET active = false")
    assert write.rc != 0 and "read-only transaction" in write.stderr
    # ...and by its rights, whatever a session sets.
    write = readonly(host, root, "SET default_transaction_read_only = off", "UPDATE broadcast SET active = false")
    assert write.rc != 0 and "permission denied for table broadcast" in write.stderr
    assert psql(host, "ella", "SELECT active FROM broadcast") == "t"


def test_database_is_elles_own_at_the_head_of_1_16_5(host):
    assert psql(host, "ella", "SELECT version_num FROM alembic_version") == HEAD_1_16_5
    # ELLA's schema, made by ELLA: its tables, not only alembic's.
    tables = psql(host, "ella", "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()
    assert {"analysis", "allele", "genepanel", "usergroup", "filterconfig", "broadcast", "clilog"} <= set(tables)


def test_restore_put_back_the_backup_and_kept_the_database_it_replaced(host):
    # The broadcast written after the backup is gone from the live database...
    assert psql(host, "ella", "SELECT message FROM broadcast ORDER BY id") == BEFORE
    # ...and kept in the database the restore replaced, renamed beside it.
    [replaced] = psql(host, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'ella\\_replaced\\_%'").split()
    assert psql(host, replaced, "SELECT message FROM broadcast ORDER BY id").splitlines() == [BEFORE, AFTER]


def test_no_scratch_database_is_left_behind(host):
    # The backup was verified by a restore into a scratch database, the restore went through
    # one: the role dropped both.
    names = psql(host, "postgres", "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1").split()
    assert [name for name in names if not name.startswith("ella_replaced_")] == ["ella", "postgres"]


def test_backup_and_its_manifest_belong_to_the_service_user_and_restore(host, root):
    backups = root + "/backups"
    names = sorted(host.check_output("ls %s", backups).split())
    assert len(names) == 2, names
    dump_name, manifest_name = names
    assert dump_name.startswith("molecule-") and dump_name.endswith("-1.16.5-to-manual.dump")
    assert manifest_name == dump_name + ".manifest.json"
    dump, manifest_file = host.file(f"{backups}/{dump_name}"), host.file(f"{backups}/{manifest_name}")
    assert (dump.user, manifest_file.user, manifest_file.mode) == ("ella", "ella", 0o640)
    manifest = json.loads(manifest_file.content_string)
    assert manifest["revision"] == HEAD_1_16_5
    assert manifest["row_counts"]["broadcast"] == 1
    # A restore of our own as well, independent of the role's.
    host.check_output("runuser -u postgres -- createdb molecule_restore")
    try:
        # From stdin: the backup dir is the service user's, not readable to postgres.
        restore = host.run(
            "runuser -u postgres -- pg_restore --exit-on-error --no-owner -d molecule_restore < %s", dump.path
        )
        assert restore.rc == 0, restore.stderr
        assert psql(host, "molecule_restore", "SELECT version_num FROM alembic_version") == HEAD_1_16_5
        assert psql(host, "molecule_restore", "SELECT message FROM broadcast") == BEFORE
    finally:
        host.check_output("runuser -u postgres -- dropdb molecule_restore")
