"""Which sandbox a checkout may touch: container names are global to podman, state
directories are not (a CI runner saw a developer's sandbox and every test errored)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ella_deploy import sandbox
from ella_deploy.errors import EllaDeployError, ExitCode


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A sandbox object for tmp_path/mine, podman replaced by a table of containers."""
    containers: dict[str, str] = {}
    removed: list[str] = []

    def fake_podman(*args: str, **_kwargs):
        if args[:2] == ("rm", "--force"):
            removed.append(args[-1])
            containers.pop(args[-1], None)
        return None

    monkeypatch.setattr(sandbox, "_podman", fake_podman)
    monkeypatch.setattr(sandbox.Sandbox, "_containers", lambda self: list(containers))
    monkeypatch.setattr(sandbox.Sandbox, "_inspect_containers",
                        lambda self: {n: {"state": "running", "image": "x", "state_dir": d}
                                      for n, d in containers.items()})
    mine = tmp_path / "mine"
    mine.mkdir()
    return sandbox.Sandbox(state_dir=mine), containers, removed, tmp_path


def test_a_live_sandbox_of_another_checkout_is_refused_without_take_over(site) -> None:
    box, containers, removed, tmp = site
    other = tmp / "other"
    other.mkdir()
    containers["ella-sandbox-p22-ella-db"] = str(other)
    for action in (lambda: box._check_owner(may_replace=True), lambda: box._check_owner()):
        with pytest.raises(EllaDeployError) as refused:
            action()
        assert refused.value.exit_code == ExitCode.REFUSED
        assert str(other) in str(refused.value) and "--take-over" in str(refused.value)
    assert removed == []


def test_take_over_removes_the_other_checkouts_containers_before_up(site) -> None:
    box, containers, removed, tmp = site
    other = tmp / "other"
    other.mkdir()
    containers.update({"ella-sandbox-p22-ella-db": str(other), "ella-sandbox-p22-ella-01": str(other)})
    box._check_owner(take_over=True, may_replace=True)
    assert sorted(removed) == ["ella-sandbox-p22-ella-01", "ella-sandbox-p22-ella-db"]
    # reset and down never take over, even when told.
    containers["ella-sandbox-p22-ella-db"] = str(other)
    with pytest.raises(EllaDeployError):
        box._check_owner(take_over=True)


def test_orphans_whose_state_directory_is_gone_are_replaced_by_up_only(site) -> None:
    box, containers, removed, tmp = site
    containers["ella-sandbox-p22-ella-db"] = str(tmp / "gone")
    with pytest.raises(EllaDeployError):
        box._check_owner()
    box._check_owner(may_replace=True)
    assert removed == ["ella-sandbox-p22-ella-db"]


def test_own_containers_are_left_alone(site) -> None:
    box, containers, removed, _ = site
    containers["ella-sandbox-p22-ella-db"] = str(box.state_dir.resolve())
    box._check_owner(take_over=True, may_replace=True)
    box._check_owner()
    assert removed == []
