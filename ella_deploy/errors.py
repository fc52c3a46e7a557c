"""The one error type of ella-deploy and its exit codes."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every ella-deploy command (documented in README.md)."""

    OK = 0
    # The command ran and found the environment degraded (for example: no host runs ELLA).
    DEGRADED = 1
    # The command ran and found a conflict or could not tell (two active hosts, a host
    # unreachable), or a step on a host failed.
    FAILED = 2
    # Bad input: wrong arguments, unknown inventory, missing file. Nothing was touched.
    USAGE = 64
    # The machine running ella-deploy lacks something (podman, the virtualenv, a key).
    ENVIRONMENT = 69
    # Refused for safety: lock held, guard said no, confirmation declined.
    REFUSED = 75
    INTERRUPTED = 130
    # The reader of the output went away (`| head`): 128 + SIGPIPE, as a shell reports a
    # program that SIGPIPE ended.
    BROKEN_PIPE = 141


class EllaDeployError(Exception):
    """An error the operator sees as one line, with the exit code it maps to."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
