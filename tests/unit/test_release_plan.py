"""The release's pre-flight as the operator sees it before confirming (release.plan_problems),
and the downtime a rehearsal predicts."""

from __future__ import annotations

import pytest

from ella_deploy import release

PLAN = {"environment": "prod", "host": "p22-ella-01", "request": "2.x", "version": "2.1.0",
        "current_version": "2.0.0", "change_kind": "minor",
        "image": "/ess/p22/archive/releases/ella-release-v2.1.0.sif", "db_server_free_bytes": 10 ** 11,
        "db_privileges": {"login": "ella", "createdb": True, "owns_database": True, "owner": "ella"}}


def problems(plan_changes: dict | None = None, **options) -> list[str]:
    return release.plan_problems({**PLAN, **(plan_changes or {})}, release.ReleaseOptions("2.x", **options))


def test_a_clean_plan_has_no_problems() -> None:
    assert problems() == []
    assert problems(staging_verified=("2.1.0",)) == []


@pytest.mark.parametrize("kind", ["major", "minor"])
def test_a_major_or_minor_release_needs_a_successful_release_on_staging(kind: str) -> None:
    found = problems({"change_kind": kind}, staging_verified=("2.0.0", "2.1.1"))
    assert found == [f"2.1.0 is a {kind} change with no successful release on staging on record: release it "
                     "there first, or --skip-staging-check (audited)"]
    assert problems({"change_kind": kind}, staging_verified=("2.1.0",)) == []


def test_an_unreadable_staging_log_counts_as_nothing_verified_and_says_why() -> None:
    found = problems(staging_verified=(), staging_error="staging's audit log could not be read: timeout")
    assert len(found) == 1 and found[0].endswith("(staging's audit log could not be read: timeout)")


@pytest.mark.parametrize("kind", ["patch", "none", "initial", "downgrade"])
def test_the_staging_rule_does_not_hold_up_a_hotfix_or_other_kinds(kind: str) -> None:
    found = problems({"change_kind": kind, "version": "2.0.1"}, staging_verified=(), allow_downgrade=True)
    assert found == []


def test_no_staging_named_means_no_staging_rule() -> None:
    assert problems({"change_kind": "major"}, staging_verified=None) == []


def test_a_downgrade_is_refused_unless_allowed() -> None:
    plan = {"change_kind": "downgrade", "version": "1.9.0", "current_version": "2.0.0"}
    assert problems(plan) == ["1.9.0 is older than the running 2.0.0 (--allow-downgrade)"]
    assert problems(plan, allow_downgrade=True) == []
    assert problems({"change_kind": "minor"}, allow_downgrade=True) == []


def test_checksum_image_journal_and_lock_problems_are_each_named() -> None:
    found = problems({"checksum_problem": "sha256 differs from ella-release-v2.1.0.sif.sha256",
                      "image_problem": "ella_config.yml: unknown key",
                      "journal": {"open": True, "version": "2.0.9", "phase": "starting"},
                      "lock_holder": {"operator": "kari", "since": "10:00", "command": "ella-deploy start"}})
    assert found == [
        "ella-release-v2.1.0.sif: sha256 differs from ella-release-v2.1.0.sif.sha256",
        "the new image says: ella_config.yml: unknown key",
        "the release of 2.0.9 stopped in phase starting: run `ella-deploy recover` first",
        "deploy lock held by kari since 10:00 (ella-deploy start)",
    ]


def test_a_closed_journal_is_no_problem() -> None:
    assert problems({"journal": {"open": False, "version": "2.0.0", "phase": "closed"}}) == []
    assert problems({"journal": None, "lock_holder": None, "checksum_problem": "", "image_problem": ""}) == []


def test_the_plan_shows_the_problems_as_refusals() -> None:
    plan = {**PLAN, "guard": "ONE ACTIVE", "change_kind": "downgrade", "version": "1.9.0",
            "migrations_pending": False, "database_bytes": 1e6, "free_bytes": 1e9}
    shown = release.render_plan(plan, release.ReleaseOptions("1.9.0"))
    assert "refused by pre-flight:\n  ! 1.9.0 is older than the running 2.0.0" in shown
    assert "refused by pre-flight" not in release.render_plan({**plan, "change_kind": "minor", "version": "2.1.0"},
                                                               release.ReleaseOptions("2.x"))


def test_predicted_downtime_without_a_last_release_assumes_every_other_step() -> None:
    predicted = release.predict_downtime({"rollback_point_seconds": 2, "migration_seconds": 3}, [
        {"kind": "release", "outcome": "rolled_back", "to_version": "2.0.1", "steps": [{"name": "stop", "seconds": 1}]},
        {"kind": "release", "outcome": "success", "to_version": "2.0.0", "steps": []},
        {"kind": "rehearsal", "outcome": "success", "steps": [{"name": "stop", "seconds": 1}]},
    ])
    assert predicted["steps"]["stop"] == release.ASSUMED_STEPS["stop"]
    assert predicted["seconds"] == round(sum(release.ASSUMED_STEPS.values()) + 5, 1)
    assert predicted["from"].endswith("assumed values (other steps)")
    assert list(predicted["steps"]) == release.DOWNTIME_ORDER


def test_predicted_downtime_takes_the_newest_successful_release() -> None:
    older = {"kind": "release", "outcome": "success", "to_version": "2.0.0", "steps": [{"name": "stop", "seconds": 9}]}
    newer = {"kind": "release", "outcome": "success", "to_version": "2.0.1", "steps": [{"name": "stop", "seconds": 2}]}
    predicted = release.predict_downtime({"rollback_point_seconds": 0, "migration_seconds": 0}, [older, newer])
    assert predicted["steps"]["stop"] == 2 and "2.0.1" in predicted["from"]


def test_predicted_downtime_is_rounded_to_hundredths_per_step_and_tenths_in_all() -> None:
    last = {"kind": "release", "outcome": "success", "to_version": "2.0.1",
            "steps": [{"name": name, "seconds": 1.004} for name in release.ASSUMED_STEPS]}
    predicted = release.predict_downtime({"rollback_point_seconds": 0.5, "migration_seconds": 0.06}, [last])
    assert predicted["steps"]["stop"] == 1.0
    assert predicted["seconds"] == 5.6
    assert predicted["from"] == "this rehearsal (rollback point, migrate) and the release of 2.0.1 (other steps)"


@pytest.mark.parametrize(("privileges", "said"), [
    ({"login": "ella", "createdb": False, "owns_database": True, "owner": "ella"}, "may not CREATE DATABASE"),
    ({"login": "ella", "createdb": True, "owns_database": False, "owner": "postgres"}, "its owner is postgres"),
])
def test_a_login_that_could_not_make_or_drop_the_copies_is_a_problem(privileges, said) -> None:
    [problem] = problems({"db_privileges": privileges})
    assert said in problem and "ask the DBA" in problem


def test_unknown_free_space_on_the_database_server_is_never_enough_unless_stated() -> None:
    [problem] = problems({"db_server_free_bytes": None})
    assert "not known here" in problem and "--db-server-free SIZE" in problem
    assert problems({"db_server_free_bytes": None}, db_server_free="120G") == []


@pytest.mark.parametrize(("text", "size"), [("120G", 120 * 1024 ** 3), ("500M", 500 * 1024 ** 2), ("1.5T", int(1.5 * 1024 ** 4)),
                                            ("4096", 4096), ("64 GiB", 64 * 1024 ** 3)])
def test_sizes_read_as_df_shows_them(text, size) -> None:
    assert release.parse_size(text) == size


def test_a_size_that_is_none_is_bad_input() -> None:
    with pytest.raises(release.EllaDeployError) as error:
        release.validate(release.ReleaseOptions("2.1.0", db_server_free="lots"))
    assert error.value.exit_code == 64 and "is not a size" in error.value.message
