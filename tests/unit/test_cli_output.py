"""ella_cli_exec (ansible/plugins/modules/ella_cli_exec.py) with private_output, run as Ansible
runs a module: what ella-cli prints (a new password, say) is in a 0600 file of the module's
user, never in the module's result. The command itself is a stand-in `singularity` on PATH
here; tests/sandbox/test_operations.py runs ELLA's own users reset_password."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.unit import plugins

PRINTED = "Reset password for user testuser1 (id: 1) with password W4kvQ9nS2pXr"


def run_module(tmp_path: Path, **arguments) -> tuple[dict, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "singularity"
    stand_in.write_text(f"#!/bin/sh\necho '{PRINTED}'\necho 'warning: stderr too' >&2\n")
    stand_in.chmod(0o755)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"image": "/no/image.sif", **arguments}}))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    done = subprocess.run([*plugins.module_command("ansible/plugins/modules/ella_cli_exec.py"), str(args)],
                          capture_output=True, text=True, check=False, env=env)
    return json.loads(done.stdout), done.stdout


def test_private_output_goes_to_a_file_of_its_own_and_never_into_the_result(tmp_path):
    result, raw = run_module(tmp_path, args=["users", "reset_password", "testuser1"], private_output=True)
    assert result["rc"] == 0 and result["stdout"] == "" and result["stderr"] == ""
    assert "W4kvQ9nS2pXr" not in raw
    path = Path(result["output_file"])
    assert path.parent == tmp_path and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"stdout": PRINTED + "\n", "stderr": "warning: stderr too\n"}


def test_without_it_the_output_is_the_result_as_before(tmp_path):
    result, _ = run_module(tmp_path, args=["broadcast", "list"], changes=False)
    assert result["stdout"] == PRINTED + "\n" and "output_file" not in result
