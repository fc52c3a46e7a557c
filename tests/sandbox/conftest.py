"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.conftest import run_cli


def api(sandbox, path: str, body: dict | None = None, host: str = "p22-ella-01") -> dict:
    """ELLA's API on a sandbox host, as a browser would call it."""
    request = urllib.request.Request(
        f"http://{sandbox.address(host)}:3114{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def write_clinical_data(sandbox, count: int = 12) -> None:
    """Rows written through ELLA's API, as users would."""
    for number in range(count):
        analysis = api(sandbox, "/api/v1/analyses/", {"name": f"Diag-{number}", "genepanel": "HBOC_v1"})
        api(sandbox, "/api/v1/alleleassessments/",
            {"analysis_id": analysis["id"], "allele": f"chr13:g.{32_900_000 + number}A>G", "classification": "4"})
        api(sandbox, "/api/v1/interpretationlogs/",
            {"analysis_id": analysis["id"], "user_id": 1, "message": f"reviewed {number}"})


@pytest.fixture
def fresh(sandbox):
    """The sandbox as `sandbox reset` leaves it: 2.0.0 running on p22-ella-01, no clinical data."""
    run_cli("sandbox", "reset", check=True)
    return sandbox


@pytest.fixture
def prod(sandbox):
    """Production as before a release: 2.0.0 running on p22-ella-01, with clinical data."""
    run_cli("sandbox", "reset", check=True)
    write_clinical_data(sandbox)
    return sandbox
