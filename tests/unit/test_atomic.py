"""ella_atomic (ansible/plugins/module_utils/ella_atomic.py): the one way the modules replace
a file on a host (journal, lock holder, manifest, configuration), on real files."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from tests.unit import plugins

atomic = plugins.load("ansible/plugins/module_utils/ella_atomic.py")


def test_the_file_is_replaced_with_its_mode_and_nothing_else_is_left(tmp_path: Path) -> None:
    target = tmp_path / "journal.json"
    target.write_text("old")
    atomic.write_atomic(str(target), "new ✓")
    assert target.read_text() == "new ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    atomic.write_atomic(str(target), b"\x00bytes", 0o600)
    assert target.read_bytes() == b"\x00bytes" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]


def test_a_failed_replace_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "holder.json"
    target.mkdir()  # rename(2) of a file over a directory fails
    with pytest.raises(OSError):
        atomic.write_atomic(str(target), "{}")
    assert target.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["holder.json"]


def test_two_writers_at_once_leave_one_whole_file_never_a_mix(tmp_path: Path) -> None:
    # Two writers at once (as two processes taking over one lock would be).
    target = tmp_path / "holder.json"
    payloads = {name: json.dumps({"writer": name, "pad": name * 4000}) for name in ("a", "b")}
    atomic.write_atomic(str(target), payloads["a"])
    seen, errors = set(), []

    def write(name: str) -> None:
        try:
            for _ in range(200):
                atomic.write_atomic(str(target), payloads[name])
        except OSError as error:  # pragma: no cover - what a shared temporary name did
            errors.append(error)

    writers = [threading.Thread(target=write, args=(name,)) for name in payloads]
    for writer in writers:
        writer.start()
    while any(writer.is_alive() for writer in writers):
        seen.add(target.read_text())
    for writer in writers:
        writer.join()
    assert not errors
    assert seen <= set(payloads.values())
    assert sorted(os.listdir(tmp_path)) == ["holder.json"]
