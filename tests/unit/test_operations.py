"""Pure parts of the daily operations: ELLA's log stamps and time windows (read on the host,
ansible/plugins/module_utils/ella_logs.py), ella-cli argument checks."""

from __future__ import annotations

import datetime
import os
import time

import pytest

from ella_deploy import operations
from ella_deploy.errors import EllaDeployError, ExitCode
from tests.unit import plugins

ella_logs = plugins.load("ansible/plugins/module_utils/ella_logs.py")
UTC = datetime.UTC
# The formats of ELLA's real logs (seen in the sandbox): nginx and gunicorn access lines with an
# offset, gunicorn's error log with one, ELLA's own log and supervisord's in local time.
NGINX = '10.213.22.1 - - [25/Nov/2026:11:40:00 +0000] "GET /api/v1/config/ HTTP/1.1" 200 58505 "-" "x"'
GUNICORN = "[2026-11-25 12:55:00 +0100] [5169] [DEBUG] GET /api/v1/config/"
ELLA_LOCAL = "2026-11-25 11:58:30,967 [INFO] __main__: Starting polling worker"


@pytest.fixture
def oslo():
    """The hosts' local time in TSD: Europe/Oslo (UTC+1 in November)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Oslo"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_stamps_with_an_offset_and_in_local_time(oslo):
    assert ella_logs.line_time(NGINX) == datetime.datetime(2026, 11, 25, 11, 40, tzinfo=UTC).timestamp()
    assert ella_logs.line_time(GUNICORN) == datetime.datetime(2026, 11, 25, 11, 55, tzinfo=UTC).timestamp()
    # 11:58:30 in Oslo is 10:58:30 UTC.
    assert ella_logs.line_time(ELLA_LOCAL) == datetime.datetime(2026, 11, 25, 10, 58, 30, tzinfo=UTC).timestamp()
    assert ella_logs.line_time("Traceback (most recent call last):") is None
    assert ella_logs.line_time('  File "/ella/src/api/main.py", line 1') is None


def test_window_keeps_continuation_lines_with_their_line(tmp_path, oslo):
    log = tmp_path / "api.log"
    traceback = ["Traceback (most recent call last):", '  File "/ella/src/x.py", line 1', "ValueError: x"]
    log.write_text("\n".join([NGINX, GUNICORN, *traceback, ELLA_LOCAL]) + "\n")
    since = datetime.datetime(2026, 11, 25, 11, 50, tzinfo=UTC).timestamp()
    assert list(ella_logs.window_lines(str(log), since)) == [GUNICORN, *traceback]
    assert list(ella_logs.window_lines(str(log), 0)) == [NGINX, GUNICORN, *traceback, ELLA_LOCAL]


@pytest.mark.parametrize(("text", "expected"), [("10m", 600), ("2h", 7200), ("45s", 45), ("1d", 86400)])
def test_parse_since(text, expected):
    assert operations.parse_since(text).total_seconds() == expected


@pytest.mark.parametrize("text", ["10", "m", "1w", "-5m", ""])
def test_parse_since_refuses_nonsense(text):
    with pytest.raises(EllaDeployError) as refused:
        operations.parse_since(text)
    assert refused.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("args", [[], ["database", "upgrade", "head"]])
def test_cli_refuses_before_touching_a_host(args, tmp_path):
    # A nonexistent inventory would fail on use: the refusal must come first.
    with pytest.raises(EllaDeployError) as refused:
        operations.ella_cli(tmp_path / "no-inventory", args, "ella-deploy cli")
    assert refused.value.exit_code == ExitCode.USAGE


def test_cli_refuses_a_migration_however_it_is_spelled(tmp_path):
    with pytest.raises(EllaDeployError) as refused:
        operations.ella_cli(tmp_path / "no-inventory", ["--debug", "database", "downgrade", "base"], "ella-deploy cli")
    assert refused.value.exit_code == ExitCode.USAGE


def test_row_count_differences_name_only_the_tables_that_differ():
    filters = plugins.load("ansible/plugins/filter/ella.py")
    live = {"analysis": 12, "broadcast": 1, "uiexception": 0}
    assert filters.ella_count_differences(live, dict(live)) == {}
    assert filters.ella_count_differences(live, {"analysis": 11, "broadcast": 1}) == {
        "analysis": [12, 11], "uiexception": [0, None]}
