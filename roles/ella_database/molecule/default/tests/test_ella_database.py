"""ella_database after converge: password file, migrated database, a restorable backup."""

from __future__ import annotations

from ella_molecule import instances, inventory_vars

testinfra_hosts = instances()

# Head of the stand-in's 2.0.0 release (testbed/README.md).
HEAD_2_0_0 = "4f1c2a9e7b30"


def psql(host, database: str, query: str) -> str:
    """A query as the server's superuser, over the local socket."""
    return host.check_output("runuser -u postgres -- psql --no-psqlrc -At -d %s -c %s", database, query)


def test_password_file_is_private_and_complete(host):
    variables = inventory_vars(host)
    pgpass = host.file(variables["ella_root"] + "/ops/pgpass")
    assert pgpass.user == "ella"
    assert pgpass.mode == 0o600
    entries = [line for line in pgpass.content_string.splitlines() if line and not line.startswith("#")]
    assert entries == ["127.0.0.1:5432:*:ella:" + variables["ella_db_password"]]


def test_service_user_logs_in_with_the_password_file(host):
    root = inventory_vars(host)["ella_root"]
    result = host.run(
        "runuser -u ella -- env PGPASSFILE=%s psql --no-psqlrc --no-password -At "
        "-d postgresql://ella@127.0.0.1:5432/ella -c 'SELECT current_user'",
        root + "/ops/pgpass",
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "ella"


def test_database_is_at_the_head_of_2_0_0(host):
    assert psql(host, "ella", "SELECT version_num FROM alembic_version") == HEAD_2_0_0


def test_backup_exists_and_restores(host):
    backups = inventory_vars(host)["ella_root"] + "/backups"
    dumps = host.check_output("ls %s", backups).split()
    assert len(dumps) == 1, dumps
    assert dumps[0].startswith("molecule-") and dumps[0].endswith("-none-to-2.0.0.dump")
    dump = host.file(f"{backups}/{dumps[0]}")
    assert dump.user == "ella"
    listing = host.run("pg_restore --list %s", dump.path)
    assert listing.rc == 0, listing.stderr
    assert "TABLE public alembic_version" in listing.stdout
    # A restore of our own as well, independent of the role's verify_restore.
    host.check_output("runuser -u postgres -- createdb molecule_restore")
    try:
        # From stdin: the backup dir is the service user's, not readable to postgres.
        restore = host.run(
            "runuser -u postgres -- pg_restore --exit-on-error --no-owner -d molecule_restore < %s", dump.path
        )
        assert restore.rc == 0, restore.stderr
        assert psql(host, "molecule_restore", "SELECT version_num FROM alembic_version") == HEAD_2_0_0
    finally:
        host.check_output("runuser -u postgres -- dropdb molecule_restore")


def test_no_scratch_database_is_left_behind(host):
    # converge verified its backup by a restore into a scratch database; the role dropped it.
    assert psql(host, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE '%\\_verify\\_%'") == ""
