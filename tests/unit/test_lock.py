"""The deploy lock (ansible/plugins/module_utils/ella_lock.py) on real directories: who may take
it, when a holder counts as gone, and that a break is a compare-and-swap."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from tests.unit import plugins

lock = plugins.load("ansible/plugins/module_utils/ella_lock.py")

OLA = {"operator": "ola", "controller": "ctl-1", "command": "ella-deploy release 2.1.0"}
KARI = {"operator": "kari", "controller": "ctl-2", "command": "ella-deploy start"}
LEASE = 90


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "deploy" / "lock")


def age(path: str, seconds: float) -> None:
    """The holder's last heartbeat was `seconds` ago."""
    then = time.time() - seconds
    os.utime(os.path.join(path, "heartbeat"), (then, then))


def stored(path: str) -> dict:
    """holder.json, as an operator (or another ella-deploy version) reads it on the shared storage."""
    with open(os.path.join(path, "holder.json")) as handle:
        return json.load(handle)


def test_a_free_lock_is_taken_and_its_token_never_shown(path: str) -> None:
    record, broken = lock.take(path, OLA, "token-ola", LEASE)
    assert broken is None
    assert "token" not in record and record["operator"] == "ola" and record["lease_seconds"] == LEASE
    assert stored(path)["token"] == "token-ola"
    assert os.path.isfile(os.path.join(path, "heartbeat"))
    assert lock.heartbeat_age(path) < 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["since"]), record["since"]


def test_only_the_owner_and_its_group_may_look_into_the_lock(path: str) -> None:
    # holder.json holds the token: whoever reads it can take the lock over.
    umask = os.umask(0)
    os.umask(umask)
    lock.take(path, OLA, "token-ola", LEASE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750 & ~umask


def test_a_held_lock_is_not_taken_by_another(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    with pytest.raises(lock.LockError) as error:
        lock.take(path, KARI, "token-kari", LEASE)
    assert "ola on ctl-1" in str(error.value)
    assert error.value.holder["operator"] == "ola" and "token" not in error.value.holder
    assert stored(path)["token"] == "token-ola"


def test_a_held_lock_whose_holder_is_gone_is_still_not_taken_without_a_reason(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    age(path, 10 * LEASE)
    with pytest.raises(lock.LockError):
        lock.take(path, KARI, "token-kari", LEASE)
    assert stored(path)["token"] == "token-ola"


def test_the_holders_own_token_takes_its_lock_over(path: str) -> None:
    first, _ = lock.take(path, OLA, "token-ola", LEASE)
    age(path, 60)
    record, broken = lock.take(path, {"command": "ella-deploy recover"}, "token-ola", 30)
    assert broken is None
    assert record["since"] == first["since"] and record["operator"] == "ola"
    assert record["command"] == "ella-deploy recover" and record["lease_seconds"] == 30 and "resumed" in record
    assert "token" not in record and stored(path)["token"] == "token-ola"
    assert lock.heartbeat_age(path) < 5


def test_a_lock_alive_is_never_broken_even_with_a_reason(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    age(path, LEASE - 5)
    with pytest.raises(lock.LockError, match=r"still there \(heartbeat 8[4-6]s ago\): not broken"):
        lock.take(path, KARI, "token-kari", LEASE, break_reason="it hangs")
    assert stored(path)["token"] == "token-ola"
    assert sorted(os.listdir(os.path.dirname(path))) == [lock.CLOCK, "lock"]


def test_a_lock_past_its_lease_is_broken_with_a_reason_and_kept_aside(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    age(path, LEASE + 5)
    record, broken = lock.take(path, KARI, "token-kari", LEASE, break_reason="ola's laptop died")
    assert record["operator"] == "kari" and stored(path)["token"] == "token-kari"
    assert broken["operator"] == "ola" and broken["break_reason"] == "ola's laptop died"
    assert "no heartbeat" in broken["gone"] and "token" not in broken
    kept = os.path.join(os.path.dirname(path), broken["kept_as"])
    assert re.fullmatch(r"lock\.broken-\d{8}T\d{6}Z-[0-9a-f]{8}", broken["kept_as"]), broken["kept_as"]
    assert stored(kept)["token"] == "token-ola"


def test_the_controller_knowing_its_process_gone_breaks_only_a_quiet_lock(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    # A step on a host still renews it (its controller died, the step goes on): not gone.
    with lock.Heartbeat(path, "token-ola", interval=3600):
        age(path, lock.HOST_QUIET - 5)
        assert lock.renewers(path) == 1
        with pytest.raises(lock.LockError):
            lock.take(path, KARI, "token-kari", LEASE, break_reason="recover", controller_gone="pid 4242 ended")
    # The step ended: nothing renews it any more, and the last heartbeat has settled.
    assert lock.renewers(path) == 0
    age(path, lock.SETTLE - 2)
    with pytest.raises(lock.LockError):
        lock.take(path, KARI, "token-kari", LEASE, break_reason="recover", controller_gone="pid 4242 ended")
    age(path, lock.SETTLE + 2)
    _, broken = lock.take(path, KARI, "token-kari", LEASE, break_reason="recover", controller_gone="pid 4242 ended")
    assert broken["gone"].startswith("pid 4242 ended") and "no step on a host renews" in broken["gone"]


def test_a_host_that_crashed_in_a_step_leaves_its_word_and_counts_gone_after_the_quiet(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    os.makedirs(os.path.join(path, lock.RENEWERS))
    Path(path, lock.RENEWERS, "p22-ella-01-4711").touch()
    age(path, lock.HOST_QUIET - 5)
    with pytest.raises(lock.LockError):
        lock.take(path, KARI, "token-kari", LEASE, break_reason="recover", controller_gone="pid 4242 ended")
    age(path, lock.HOST_QUIET + 5)
    _, broken = lock.take(path, KARI, "token-kari", LEASE, break_reason="recover", controller_gone="pid 4242 ended")
    assert "nothing renewed the lock" in broken["gone"]


def test_ages_are_measured_by_the_storages_clock_not_the_hosts(path: str, monkeypatch) -> None:
    # A host whose clock runs 10 minutes ahead must not call a fresh heartbeat stale (the
    # storage stamps the probe it touches by its own clock, here the same file system's).
    lock.take(path, OLA, "token-ola", LEASE)
    real = time.time
    monkeypatch.setattr(lock.time, "time", lambda: real() + 600)
    assert lock.heartbeat_age(path) < 5
    with pytest.raises(lock.LockError):
        lock.take(path, KARI, "token-kari", LEASE, break_reason="clock skew")


def test_the_token_is_readable_by_the_service_user_only(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    assert stat.S_IMODE(os.stat(os.path.join(path, lock.HOLDER)).st_mode) == 0o600


@pytest.mark.parametrize(("holder", "seconds", "controller_gone", "gone"), [
    ({"lease_seconds": 90}, None, None, False),
    ({"lease_seconds": 90}, None, "ended", False),
    ({"lease_seconds": 90}, 90, None, False),
    ({"lease_seconds": 90}, 91, None, True),
    ({"lease_seconds": 0}, 10_000, None, False),
    ({"lease_seconds": 1}, 2, None, True),
    ({}, 10_000, None, False),
    ({"lease_seconds": 90}, lock.HOST_QUIET, "ended", False),
    ({"lease_seconds": 90}, lock.HOST_QUIET + 1, "ended", True),
    ({}, lock.HOST_QUIET + 1, "ended", True),
    ({"lease_seconds": 90}, lock.HOST_QUIET + 1, None, False),
])
def test_when_a_holder_is_gone(holder, seconds, controller_gone, gone) -> None:
    # (A step still renewing: the old rule, the quiet decides.)
    assert (lock.holder_gone(holder, seconds, controller_gone, renewing=1) is not None) == gone


@pytest.mark.parametrize(("seconds", "controller_gone", "renewing", "gone"), [
    (lock.SETTLE + 1, "ended", 0, True),
    (lock.SETTLE - 1, "ended", 0, False),
    (lock.SETTLE + 1, None, 0, False),
    (lock.SETTLE + 1, "ended", 1, False),
    (lock.SETTLE + 1, "ended", None, False),
])
def test_a_holder_whose_controller_ended_and_no_step_renews_is_gone_once_settled(seconds, controller_gone,
                                                                                 renewing, gone) -> None:
    assert (lock.holder_gone({"lease_seconds": 90}, seconds, controller_gone, renewing) is not None) == gone


def test_the_host_is_quiet_after_three_missed_heartbeats() -> None:
    assert lock.HOST_QUIET == 3 * lock.HEARTBEAT_INTERVAL == 30


def test_heartbeat_age_falls_back_to_the_directory_and_is_none_without_a_lock(path: str) -> None:
    assert lock.heartbeat_age(path) is None
    os.makedirs(path)
    then = time.time() - 500
    os.utime(path, (then, then))
    assert 499 < lock.heartbeat_age(path) < 510
    assert lock.heartbeat_age(path, now=then + 20) == pytest.approx(20, abs=1)


def test_a_lock_directory_without_a_readable_holder_is_held(path: str) -> None:
    os.makedirs(path)
    with pytest.raises(lock.LockError, match="unknown"):
        lock.take(path, KARI, "token-kari", LEASE)
    with open(os.path.join(path, lock.HOLDER), "w") as handle:
        handle.write("{not json")
    assert lock.read_holder(path)["operator"] == "unknown"


def just_before_the_break(monkeypatch, path: str, meanwhile) -> None:
    """A lock whose holder looks gone, and `meanwhile` happening between the break's judgement
    and its rename of the lock aside (the compare-and-swap's window)."""
    lock.take(path, OLA, "token-ola", LEASE)
    age(path, LEASE + 5)
    rename = os.rename

    def rename_after(source, target):
        if source == path:
            meanwhile()
        rename(source, target)

    monkeypatch.setattr(lock.os, "rename", rename_after)


def test_a_break_that_finds_the_lock_renewed_puts_it_back(path: str, monkeypatch) -> None:
    # The holder's heartbeat arrives.
    just_before_the_break(monkeypatch, path, lambda: lock.renew(path, "token-ola"))
    with pytest.raises(lock.LockError, match="changed hands"):
        lock.take(path, KARI, "token-kari", LEASE, break_reason="stuck")
    assert stored(path)["token"] == "token-ola"
    assert sorted(os.listdir(os.path.dirname(path))) == [lock.CLOCK, "lock"]


def test_a_break_that_finds_another_holder_puts_it_back(path: str, monkeypatch) -> None:
    # Someone else broke and took it; their lock is old-looking too.
    just_before_the_break(monkeypatch, path, lambda: lock.write_json(
        os.path.join(path, lock.HOLDER), dict(KARI, token="token-kari", lease_seconds=LEASE)))
    with pytest.raises(lock.LockError, match="changed hands") as error:
        lock.take(path, {"operator": "per"}, "token-per", LEASE, break_reason="stuck")
    assert error.value.holder["operator"] == "kari" and "token" not in error.value.holder
    assert stored(path)["token"] == "token-kari"


def test_a_break_of_a_lock_released_meanwhile_says_so(path: str, monkeypatch) -> None:
    just_before_the_break(monkeypatch, path, lambda: lock.release(path, "token-ola"))
    with pytest.raises(lock.LockError, match="released or broken by someone else"):
        lock.break_lock(path, "stuck")


def test_renew_keeps_only_the_holders_lock(path: str) -> None:
    with pytest.raises(lock.LockError, match="no longer held"):
        lock.renew(path, "token-ola")
    lock.take(path, OLA, "token-ola", LEASE)
    age(path, 60)
    lock.renew(path, "token-ola")
    assert lock.heartbeat_age(path) < 5
    age(path, 60)
    with pytest.raises(lock.LockError, match="someone else") as error:
        lock.renew(path, "token-kari")
    assert "token" not in error.value.holder
    assert lock.heartbeat_age(path) > 55


def test_release_removes_only_the_holders_lock(path: str) -> None:
    assert lock.release(path, "token-ola") is False
    lock.take(path, OLA, "token-ola", LEASE)
    with pytest.raises(lock.LockError, match="someone else"):
        lock.release(path, "token-kari")
    assert os.path.isdir(path)
    assert lock.release(path, "token-ola") is True
    assert not os.path.exists(path)


def test_describe_and_public_name_the_holder_without_its_token() -> None:
    holder = dict(OLA, since="2026-11-25T10:00:00Z", token="secret")
    assert lock.describe(holder) == "ola on ctl-1 since 2026-11-25T10:00:00Z (ella-deploy release 2.1.0)"
    assert lock.describe({}) == "? on ? since ? (?)"
    assert lock.public(holder) == dict(OLA, since="2026-11-25T10:00:00Z")
    assert lock.public(None) == {}


def test_a_heartbeat_renews_while_held_and_says_when_the_lock_is_lost(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    age(path, 60)
    with lock.Heartbeat(path, "token-ola", interval=0.02) as heartbeat:
        assert lock.heartbeat_age(path) < 5
        lock.release(path, "token-ola")
        deadline = time.time() + 5
        while heartbeat.lost is None and time.time() < deadline:
            time.sleep(0.01)
    assert "no longer held" in heartbeat.lost
    with pytest.raises(lock.LockError):
        with lock.Heartbeat(path, "token-ola"):
            pass
    for no_lock in ((None, None), (path, ""), (None, "token-ola")):  # a step run without the lock
        with lock.Heartbeat(*no_lock) as idle:
            assert idle.lost is None


def test_a_heartbeat_never_swallows_the_steps_error(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    with pytest.raises(ValueError, match="migration failed"):
        with lock.Heartbeat(path, "token-ola", interval=60):
            raise ValueError("migration failed")


def test_the_storage_clock_falls_back_to_the_hosts_where_it_cannot_be_touched(tmp_path) -> None:
    assert abs(lock.storage_now(str(tmp_path / "no" / "such" / "dir")) - time.time()) < 5


def test_a_lock_no_step_ever_renewed_is_gone_once_settled_after_its_controller(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    assert lock.renewers(path) == 0
    age(path, lock.SETTLE + 2)
    _, broken = lock.take(path, KARI, "token-kari", LEASE, break_reason="recover", controller_gone="pid 4242 ended")
    assert "no step on a host renews" in broken["gone"]


def test_two_steps_renewing_at_once_both_say_so(path: str) -> None:
    lock.take(path, OLA, "token-ola", LEASE)
    with lock.Heartbeat(path, "token-ola", interval=3600), lock.Heartbeat(path, "token-ola", interval=3600):
        assert lock.renewers(path) == 2
        assert stat.S_IMODE(os.stat(os.path.join(path, lock.RENEWERS)).st_mode) == 0o750
    assert lock.renewers(path) == 0
