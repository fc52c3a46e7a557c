"""Pure parts of the daily operations: log time windows, ella-cli argument checks."""

from __future__ import annotations

import datetime

import pytest

from ella_deploy import operations
from ella_deploy.errors import EllaDeployError, ExitCode

NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)
LINES = [
    '2026-11-25T11:40:00.000Z 10.0.0.1 "GET /api/v1/config/ HTTP/1.1" 200 3ms',
    "2026-11-25 11:55:00,123 INFO spawned: 'ella' with pid 42",
    "Traceback (most recent call last):",
    '2026-11-25T11:58:30.000Z 10.0.0.1 "GET /api/v1/analyses/ HTTP/1.1" 500 9ms',
]


def test_since_keeps_the_window_and_continuation_lines():
    assert operations.lines_since(LINES, datetime.timedelta(minutes=10), NOW) == LINES[1:]
    assert operations.lines_since(LINES, datetime.timedelta(minutes=1), NOW) == []
    assert operations.lines_since(LINES, datetime.timedelta(hours=1), NOW) == LINES


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
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "ansible" / "plugins" / "filter" / "ella.py"
    spec = importlib.util.spec_from_file_location("ella_filters", path)
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    live = {"analysis": 12, "broadcast": 1, "uiexception": 0}
    assert filters.ella_count_differences(live, dict(live)) == {}
    assert filters.ella_count_differences(live, {"analysis": 11, "broadcast": 1}) == {
        "analysis": [12, 11], "uiexception": [0, None]}
