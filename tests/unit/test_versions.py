"""Version resolution and change kinds, shared by the CLI and the playbooks."""

from __future__ import annotations

import pytest

from ella_deploy import versions

STAGED = [
    "/x/archive/releases/ella-release-2.0.0.sif",
    "/x/archive/releases/ella-release-2.10.1.sif",
    "/x/archive/releases/ella-release-2.9.3.sif",
    "/x/archive/releases/ella-release-3.0.0.sif",
    "/x/archive/releases/ella-release-2.9.3.sif.sha256",
    "/x/archive/releases/notes.txt",
]


def test_versions_in_sorts_numerically_and_ignores_other_files():
    assert versions.versions_in(STAGED) == ["2.0.0", "2.9.3", "2.10.1", "3.0.0"]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [("2.x", "2.10.1"), ("2.9.x", "2.9.3"), ("3.x", "3.0.0"), ("2.0.0", "2.0.0")],
)
def test_resolve_picks_the_newest_match(request_, expected):
    assert versions.resolve(request_, versions.versions_in(STAGED)) == expected


@pytest.mark.parametrize("request_", ["4.x", "2.8.x", "2.9.4"])
def test_resolve_refuses_what_is_not_staged(request_):
    with pytest.raises(versions.VersionError):
        versions.resolve(request_, versions.versions_in(STAGED))


@pytest.mark.parametrize("text", ["2", "2.1", "vv2.1.0", "2.x.x", "latest", "", "2.1.0-", "2.1.0\n", "2.1.٣",
                                  "02.1.0", "2.1.0 ", "v2.x"])
def test_malformed_requests_are_not_requests(text):
    assert not versions.is_request(text)


@pytest.mark.parametrize("text", ["2.1.0", "v2.1.0", "2.x", "2.1.x", "1.18.0-rc.1", "1.17.2-fault.never-healthy"])
def test_requests(text):
    assert versions.is_request(text)


def test_release_files_are_named_as_ella_names_them():
    files = ["/x/ella-release-v1.17.2.sif", "/x/ella-release-1.16.5.sif", "/x/ella-release-v1.17.2.sif.sha256",
             "/x/ella-release-v1.17.2-fault.never-healthy.sif", "/x/ella-release-v1.7.sif", "/x/notes.txt"]
    assert versions.files_by_version(files) == {
        "1.17.2": "ella-release-v1.17.2.sif", "1.16.5": "ella-release-1.16.5.sif",
        "1.17.2-fault.never-healthy": "ella-release-v1.17.2-fault.never-healthy.sif"}
    assert versions.versions_in(files) == ["1.16.5", "1.17.2-fault.never-healthy", "1.17.2"]


def test_a_pattern_never_resolves_to_a_pre_release():
    staged = ["1.17.1", "1.17.2-fault.never-healthy", "1.18.0-rc.1"]
    assert versions.resolve("1.x", staged) == "1.17.1"
    assert versions.resolve("1.17.x", staged) == "1.17.1"
    assert versions.resolve("1.18.0-rc.1", staged) == "1.18.0-rc.1"
    with pytest.raises(versions.VersionError):
        versions.resolve("1.18.x", staged)


@pytest.mark.parametrize(
    ("current", "target", "kind"),
    [
        (None, "2.0.0", "initial"),
        ("2.0.0", "2.0.0", "none"),
        ("2.0.0", "2.0.1", "patch"),
        ("2.0.5", "2.1.0", "minor"),
        ("2.9.0", "3.0.0", "major"),
        ("2.10.0", "2.9.9", "downgrade"),
        # A hotfix changes only PATCH, whatever the numbers (never read as a minor release,
        # which would need staging first).
        ("2.1.0", "2.1.1", "patch"),
        ("2.0.1", "2.0.2", "patch"),
        ("2.1.1", "2.1.2", "patch"),
        # Same MAJOR.MINOR.PATCH, another pre-release or the release itself: never a hotfix.
        ("1.18.0-rc.1", "1.18.0-rc.2", "minor"),
        ("1.18.0-rc.1", "1.18.0", "minor"),
        ("1.18.0", "1.18.0-rc.1", "downgrade"),
        ("2.0.0", "1.99.99", "downgrade"),
    ],
)
def test_change_kind(current, target, kind):
    assert versions.change_kind(current, target) == kind


def test_predicted_downtime_takes_the_rehearsal_and_the_last_release():
    from ella_deploy import release

    rehearsal = {"backup_seconds": "1.5", "rollback_point_seconds": "0.7", "migration_seconds": "12.0"}
    last = {"kind": "release", "outcome": "success", "to_version": "1.17.0",
            "steps": [{"name": "stop", "seconds": 0.9}, {"name": "start", "seconds": 5.5},
                      {"name": "rollback_point", "seconds": 9.9}, {"name": "migrate", "seconds": 99},
                      {"name": "switch", "seconds": 0.4}, {"name": "fixtures", "seconds": 0.8},
                      {"name": "guard_start", "seconds": 1.2}]}
    older = {**last, "to_version": "1.16.5", "steps": [{"name": "stop", "seconds": 50}]}
    failed = {**last, "outcome": "rolled_back", "steps": [{"name": "stop", "seconds": 70}]}
    predicted = release.predict_downtime(rehearsal, [older, last, failed, {"kind": "accept"}])
    # The backup runs while ELLA serves: not downtime. The rollback point and the migration are
    # this rehearsal's, the rest the last successful release's, in the order the window runs.
    assert list(predicted["steps"].items()) == [("stop", 0.9), ("rollback_point", 0.7), ("switch", 0.4),
                                                ("migrate", 12.0), ("fixtures", 0.8), ("guard_start", 1.2),
                                                ("start", 5.5)]
    assert predicted["seconds"] == 21.5 and "1.17.0" in predicted["from"]
    assumed = release.predict_downtime(rehearsal, [])
    assert assumed["steps"]["start"] == release.ASSUMED_STEPS["start"] and "assumed" in assumed["from"]


def test_pre_releases_order_as_semver_says():
    ordered = ["1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
               "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1-rc.1", "1.0.1"]
    assert sorted(reversed(ordered), key=versions.parse) == ordered
    assert versions.is_prerelease("1.0.0-rc.1") and not versions.is_prerelease("1.0.0")


def test_a_bare_release_file_name_is_read_too():
    assert versions.files_by_version(["ella-release-v1.0.0.sif", "../archive/ella-release-1.0.1.sif"]) == {
        "1.0.0": "ella-release-v1.0.0.sif", "1.0.1": "ella-release-1.0.1.sif"}


def test_refusals_say_what_is_wrong():
    with pytest.raises(versions.VersionError,
                       match=r"^'2\.1' is not a version: use MAJOR\.MINOR\.PATCH, 1\.x or 1\.17\.x$"):
        versions.parse("2.1")
    with pytest.raises(versions.VersionError, match=r"^ella-release-v2\.9\.4\.sif is not staged in archive/releases$"):
        versions.resolve("v2.9.4", ["2.9.3"])
    with pytest.raises(versions.VersionError, match=r"^'latest' is not a version"):
        versions.resolve("latest", ["2.9.3"])
    with pytest.raises(versions.VersionError, match=r"^no staged release matches 4\.x \(staged: 2\.9\.3, 3\.0\.0\)$"):
        versions.resolve("4.x", ["2.9.3", "3.0.0"])
    with pytest.raises(versions.VersionError, match=r"^no staged release matches 4\.x \(staged: none\)$"):
        versions.resolve("4.x", [])
