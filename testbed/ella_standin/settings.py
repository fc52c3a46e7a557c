"""Settings of the ELLA stand-in (test double), read from the environment only."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ella_standin.errors import ExitCode, StandinError

DEFAULT_API_PORT = 3114
DEFAULT_API_HOST = "0.0.0.0"
DEFAULT_API_LOG = "logs/api.log"
DEFAULT_BOOT_DELAY = 0.5


@dataclass(frozen=True)
class Settings:
    db_url: str | None
    """libpq URI or DSN; the password comes from PGPASSFILE, never from here."""
    api_host: str
    api_port: int
    api_log: Path
    boot_delay: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            db_url=env.get("DB_URL") or None,
            api_host=env.get("API_HOST") or DEFAULT_API_HOST,
            api_port=_port(env.get("API_PORT")),
            api_log=Path(env.get("ELLA_API_LOG") or DEFAULT_API_LOG),
            boot_delay=_seconds(env.get("ELLA_STANDIN_BOOT_DELAY")),
        )

    def require_db_url(self) -> str:
        if self.db_url is None:
            raise StandinError(
                "DB_URL is not set (e.g. postgresql://ella@db.example:5432/ella)",
                ExitCode.USAGE,
            )
        return self.db_url


def debug_enabled() -> bool:
    """ELLA_STANDIN_DEBUG=1: tracebacks instead of one-line errors."""
    return os.environ.get("ELLA_STANDIN_DEBUG") == "1"


def _port(text: str | None) -> int:
    if not text:
        return DEFAULT_API_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StandinError(f"API_PORT must be a TCP port number, not {text!r}", ExitCode.USAGE)
    return int(text)


def _seconds(text: str | None) -> float:
    if not text:
        return DEFAULT_BOOT_DELAY
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise StandinError(
            f"ELLA_STANDIN_BOOT_DELAY must be a number of seconds, not {text!r}", ExitCode.USAGE
        )
    return seconds


_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_db_url(db_url: str) -> str:
    """``db_url`` fit for a message: any password in it replaced by ``***``."""
    if "://" not in db_url:
        return _DSN_PASSWORD.sub(r"\1***", db_url)
    parts = urlsplit(db_url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostport}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query, flags=re.IGNORECASE)
    return urlunsplit(parts._replace(netloc=netloc, query=query))
