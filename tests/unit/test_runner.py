"""Real playbook runs through ella_deploy.runner on this machine (local connection, no mocks).

The caller's secrets must not reach the run: not its environment, not its artifacts on disk.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from ella_deploy.runner import HostFailure, PlaybookResult, run_playbook

SECRETS = {"PGPASSWORD": "s3cret-value-xyz", "VAULT_TOKEN": "hvs.t0ken-value-abc"}

PUBLISHING_PLAYBOOK = """\
---
- name: Publish what the run saw
  hosts: all
  gather_facts: false
  tasks:
    - name: Show the environment a module runs with
      ansible.builtin.command: env
      changed_when: false

    - name: Publish the report
      ansible.builtin.set_stats:
        data:
          probe:
            answer: 42
            hosts: ["{{ inventory_hostname }}"]
            # Empty unless the caller's environment leaked into the run.
            leaked: "{{ lookup('ansible.builtin.env', 'PGPASSWORD') }}{{ lookup('ansible.builtin.env', 'VAULT_TOKEN') }}"
            home_seen: "{{ lookup('ansible.builtin.env', 'HOME') | length > 0 }}"
"""

FAILING_PLAYBOOK = """\
---
- name: Fail on purpose
  hosts: all
  gather_facts: false
  tasks:
    - name: Refuse to go on
      ansible.builtin.fail:
        msg: the deliberate failure of this test
"""


@pytest.fixture
def local_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs a playbook text against localhost, state under tmp_path, secrets in the caller's env."""
    state = tmp_path / "state"
    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(state))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")

    def run(text: str) -> PlaybookResult:
        playbook = tmp_path / "playbook.yml"
        playbook.write_text(text)
        return run_playbook(playbook.resolve(), inventory)

    return run


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def test_a_run_publishes_its_stats_and_keeps_the_callers_secrets_out(local_run, tmp_path: Path) -> None:
    environment_before = dict(os.environ)

    result = local_run(PUBLISHING_PLAYBOOK)

    assert result.ok, (result.status, result.rc, result.failures, result.artifact_dir)
    assert result.failures == []
    assert result.stats["localhost"]["ok"] == 2
    probe = result.published["probe"]
    assert probe["answer"] == 42
    assert probe["hosts"] == ["localhost"]
    assert probe["home_seen"] in (True, "True")
    assert probe["leaked"] == ""

    # The artifacts are per operator and may hold hosts' answers: private to the operator.
    assert result.artifact_dir.is_relative_to(tmp_path / "state")
    assert stat.S_IMODE(result.artifact_dir.stat().st_mode) == 0o700
    written = files_under(result.artifact_dir)
    names = {path.name for path in written}
    # What ansible-runner records of the run is among the files searched below.
    assert {"command", "stdout"} <= names, names
    assert any(path.parent.name == "job_events" for path in written)
    for path in files_under(tmp_path / "state"):
        content = path.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in content, f"{name}'s value is in {path}"

    assert dict(os.environ) == environment_before
    assert os.environ["PGPASSWORD"] == SECRETS["PGPASSWORD"]


def test_a_failed_task_is_a_host_failure(local_run) -> None:
    result = local_run(FAILING_PLAYBOOK)

    assert not result.ok
    assert result.failures == [
        HostFailure(host="localhost", task="Refuse to go on", message="the deliberate failure of this test")
    ]
    assert result.stats["localhost"]["failures"] == 1
    assert os.environ["VAULT_TOKEN"] == SECRETS["VAULT_TOKEN"]


def test_an_interrupt_stops_the_run_before_its_next_task(local_run, tmp_path: Path) -> None:
    """Ctrl-C during a long task (the release window on a host): ansible-playbook is stopped
    before it starts the next one (the new version's start), not only seconds later."""
    import threading
    import time

    started = tmp_path / "first-task-started"
    second = tmp_path / "second-task-ran"
    interrupted = threading.Event()
    playbook = tmp_path / "interrupted.yml"
    playbook.write_text(f"""\
---
- name: Two steps
  hosts: all
  gather_facts: false
  tasks:
    - name: A step that takes a second
      ansible.builtin.shell: touch {started} && sleep 1
      changed_when: false

    - name: The step after it
      ansible.builtin.file:
        path: {second}
        state: touch
        mode: "0600"
""")
    inventory = tmp_path / "hosts.ini"  # written by local_run's fixture

    def cancel() -> bool:
        # The operator presses Ctrl-C as soon as the first step runs.
        if started.exists():
            interrupted.set()
        return interrupted.is_set()

    began = time.monotonic()
    result = run_playbook(playbook.resolve(), inventory, cancel=cancel)
    assert result.canceled and interrupted.is_set()
    assert not second.exists(), "the task after the interrupt ran"
    assert time.monotonic() - began < 5


def test_extra_vars_are_data_not_templates(tmp_path):
    """What a CLI hands over renders back to itself, whatever braces it holds."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from ella_deploy.runner import literal

    text = "a {{ 7*6 }} {% if true %}X{% endif %} {# c #} {{ lookup('pipe','id') }} '{{1,2},{3,4}}' }} {"
    playbook = tmp_path / "p.yml"
    playbook.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.copy:\n        content: \"{{ x }}|{{ y[0].z }}\"\n"
                        f"        dest: {tmp_path / 'out'}\n")
    (tmp_path / "ev.json").write_text(json.dumps(literal({"x": text, "y": [{"z": text}], "n": 3})))
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
                           str(playbook), "-e", f"@{tmp_path / 'ev.json'}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out").read_text() == f"{text}|{text}"
    assert literal({"n": 3, "b": True, "none": None}) == {"n": 3, "b": True, "none": None}


def test_the_extra_vars_file_is_gone_even_when_the_run_raises(tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) or any exception inside ansible-runner: the file that held
    the run's extra vars does not outlive it."""
    import ansible_runner

    from ella_deploy import runner as runner_module

    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    seen = []

    def interrupted(**kwargs):
        extravars = Path(kwargs["private_data_dir"]) / "env" / "extravars"
        seen.append((extravars, extravars.read_text(), stat.S_IMODE(extravars.stat().st_mode)))
        raise KeyboardInterrupt

    monkeypatch.setattr(ansible_runner, "run", interrupted)
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(FAILING_PLAYBOOK)
    with pytest.raises(KeyboardInterrupt):
        runner_module.run_playbook(playbook, tmp_path / "hosts.ini", extravars={"ella_db_task": {"rows": "data"}})
    (extravars, text, mode), = seen
    assert '"rows": "data"' in text and mode == 0o600
    assert not extravars.exists()


def test_each_run_has_its_own_ssh_connections_and_removes_them(tmp_path, monkeypatch):
    """Host keys are checked on every run: SSH's shared connections (ControlPersist) live in a
    directory of the run, private, and gone when it ends, so no run reuses a connection an
    earlier run opened (and checked)."""
    import ansible_runner

    from ella_deploy import runner as runner_module

    monkeypatch.setenv("ELLA_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    seen = []

    def run(**_kwargs):
        directory = Path(os.environ["ANSIBLE_SSH_CONTROL_PATH_DIR"])
        (directory / "leftover").write_text("")
        seen.append((directory, stat.S_IMODE(directory.stat().st_mode)))
        raise KeyboardInterrupt

    monkeypatch.setattr(ansible_runner, "run", run)
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(FAILING_PLAYBOOK)
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            runner_module.run_playbook(playbook, tmp_path / "hosts.ini")
    (first, mode), (second, _) = seen
    assert first != second and mode == 0o700
    assert not first.exists() and not second.exists()
    assert "ANSIBLE_SSH_CONTROL_PATH_DIR" not in os.environ
