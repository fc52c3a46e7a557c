"""ella_files (ansible/plugins/modules/ella_files.py) on real files, run as Ansible runs a module:
its arguments in a file, its result as JSON on stdout."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from pathlib import Path

from tests.unit import plugins

SECRET = "password = {SHA}not-for-the-log\n"


def run(tmp_path: Path, check_mode: bool = False, **arguments) -> tuple[dict, str]:
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**arguments, "_ansible_check_mode": check_mode}}))
    done = subprocess.run([*plugins.module_command("ansible/plugins/modules/ella_files.py"), str(args)],
                          capture_output=True, text=True, check=False)
    return json.loads(done.stdout), done.stdout


def spec(root: Path, content: str = SECRET, mode: str = "0600") -> dict:
    return {"directories": [{"path": str(root / "ops" / "supervisor"), "mode": "0750"},
                            {"path": str(root / "logs"), "mode": "0750"}],
            "files": [{"path": str(root / "ops" / "supervisor" / "supervisor.cfg"), "content": content, "mode": mode}],
            "owner": getpass.getuser()}


def test_it_writes_directories_and_files_with_their_modes_and_never_shows_the_content(tmp_path):
    root = tmp_path / "storage"
    result, stdout = run(tmp_path, **spec(root))
    config = root / "ops" / "supervisor" / "supervisor.cfg"
    assert result["changed"] and not result.get("failed")
    assert config.read_text() == SECRET
    assert oct(config.stat().st_mode & 0o7777) == "0o600"
    assert oct((root / "ops" / "supervisor").stat().st_mode & 0o7777) == "0o750"
    assert oct((root / "logs").stat().st_mode & 0o7777) == "0o750"
    assert "not-for-the-log" not in stdout
    assert sorted(os.listdir(config.parent)) == ["supervisor.cfg"]  # no temporary file left


def test_unchanged_is_not_rewritten_a_mode_alone_is_set_and_new_content_replaces_the_file(tmp_path):
    root = tmp_path / "storage"
    run(tmp_path, **spec(root))
    config = root / "ops" / "supervisor" / "supervisor.cfg"
    first = config.stat()

    again, _ = run(tmp_path, **spec(root))
    assert not again["changed"]
    assert config.stat().st_mtime_ns == first.st_mtime_ns

    mode_only, _ = run(tmp_path, **spec(root, mode="0640"))
    assert mode_only["changed"] and mode_only["changed_paths"] == [str(config)]
    assert config.stat().st_ino == first.st_ino and oct(config.stat().st_mode & 0o7777) == "0o640"

    held = config.open()  # a reader of the old file keeps reading it whole (a rename, not a rewrite)
    replaced, _ = run(tmp_path, **spec(root, content="[program:ella]\n", mode="0640"))
    assert replaced["changed"]
    assert config.read_text() == "[program:ella]\n" and config.stat().st_ino != first.st_ino
    assert held.read() == SECRET
    held.close()


def test_check_mode_reports_and_writes_nothing(tmp_path):
    root = tmp_path / "storage"
    result, _ = run(tmp_path, check_mode=True, **spec(root))
    assert result["changed"]
    assert not root.exists()


def test_a_path_of_another_owner_fails_and_is_left_alone(tmp_path):
    root = tmp_path / "storage"
    run(tmp_path, **spec(root))
    config = root / "ops" / "supervisor" / "supervisor.cfg"
    result, _ = run(tmp_path, **{**spec(root, content="other\n"), "owner": "nobody"})
    assert result["failed"]
    assert "belongs to" in result["msg"] and "not nobody" in result["msg"]
    assert config.read_text() == SECRET
