"""JSON as the ELLA stand-in (test double) writes it: timestamps in ISO 8601."""

from __future__ import annotations

import json
from datetime import datetime


def to_json(value: object, indent: int | None = None) -> str:
    return json.dumps(value, default=_encode, indent=indent)


def _encode(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
