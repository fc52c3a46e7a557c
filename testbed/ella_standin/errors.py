"""The one error type of the ELLA stand-in (test double) and its named exit codes."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    """The command ran and failed: mismatch, unknown id, failed migration, SQL error."""
    USAGE = 2
    """Bad arguments or configuration, or the database cannot be reached."""


class StandinError(Exception):
    """A failure reported to the user as one line on stderr, without a traceback."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
