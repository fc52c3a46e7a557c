"""Backups pruned by what they are (ansible/plugins/module_utils/ella_pg.py prune_backups,
unaccepted_versions), on real files."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit import plugins

pg = plugins.load("ansible/plugins/module_utils/ella_pg.py")


def backup(directory: Path, stamp: str, to: str, manifest: bool = True, start: str = "1.16.5") -> str:
    name = f"prod-{stamp}-{start}-to-{to}.dump"
    (directory / name).write_bytes(b"PGDMP")
    if manifest:
        (directory / (name + ".manifest.json")).write_text("{}")
    return name


def left(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".dump"))


def test_each_kind_keeps_its_own_newest_and_a_cut_dump_goes_at_once(tmp_path):
    releases = [backup(tmp_path, f"2026120{d}T100000Z", f"1.17.{d}") for d in range(1, 6)]
    manuals = [backup(tmp_path, f"2026120{d}T110000Z", "manual", start="1.17.0") for d in range(1, 5)]
    tasks = [backup(tmp_path, f"2026120{d}T120000Z", f"task-2026120{d}_fix", start="live") for d in range(1, 4)]
    cut = backup(tmp_path, "20261206T130000Z", "manual", manifest=False)
    (tmp_path / "LAST_SUCCESSFUL").write_text(releases[0] + "\n")
    (tmp_path / "notes.txt").write_text("not a backup")
    removed = pg.prune_backups(str(tmp_path), {"release": 2, "manual": 3, "task": 1})
    assert removed["partial"] == [cut]
    # Release: the newest two, and the oldest one, which LAST_SUCCESSFUL names.
    assert sorted(removed["pruned"]) == sorted(releases[1:3] + manuals[:1] + tasks[:2])
    assert left(tmp_path) == sorted([releases[0], *releases[3:], *manuals[1:], tasks[2]])
    assert not (tmp_path / (cut + ".manifest.json")).exists() and (tmp_path / "notes.txt").exists()
    assert not (tmp_path / (releases[1] + ".manifest.json")).exists()


def test_a_release_not_yet_accepted_keeps_every_backup_it_has(tmp_path):
    old = [backup(tmp_path, f"2026120{d}T100000Z", "1.17.0") for d in range(1, 4)]
    newer = [backup(tmp_path, f"2026121{d}T100000Z", "1.17.1") for d in range(1, 3)]
    removed = pg.prune_backups(str(tmp_path), {"release": 1}, unaccepted=["1.17.0"])
    assert removed["pruned"] == [newer[0]] and set(old) <= set(left(tmp_path))


def test_releases_not_followed_by_their_acceptance_are_unaccepted(tmp_path):
    log = tmp_path / "audit.jsonl"
    records = [{"kind": "release", "outcome": "success", "to_version": "1.17.0"},
               {"kind": "accept", "outcome": "success", "version": "1.17.0"},
               {"kind": "release", "outcome": "success", "to_version": "1.17.1"},
               {"kind": "release", "outcome": "rolled_back", "to_version": "1.17.2"},
               {"kind": "accept", "outcome": "failed", "version": "1.17.1"}]
    log.write_text("\n".join(json.dumps(r) for r in records) + '\n{"kind": "acc')
    assert pg.unaccepted_versions(str(log)) == ["1.17.1"]
    assert pg.unaccepted_versions(str(tmp_path / "none.jsonl")) == []
