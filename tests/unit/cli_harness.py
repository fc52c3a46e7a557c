"""`python -m tests.unit.cli_harness ARGS`: ella-deploy as an operator runs it, except that no
playbook ever runs. ansible-runner is replaced by a stand-in that says which playbook the
command reached (`PLAYBOOK REACHED name.yml` on stderr) and exits 99: a test sees that the
command got past its confirmation, and no host is touched.

HARNESS_STATUS_LINES=N: `status` prints N lines instead (a pipe's reader may close early).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path


def _reached(**kwargs: object) -> None:
    print(f"PLAYBOOK REACHED {Path(str(kwargs.get('playbook'))).name}", file=sys.stderr, flush=True)
    raise SystemExit(99)


def main() -> None:
    stand_in = types.ModuleType("ansible_runner")
    stand_in.run = _reached  # type: ignore[attr-defined]
    sys.modules["ansible_runner"] = stand_in
    from ella_deploy import cli

    lines = int(os.environ.get("HARNESS_STATUS_LINES") or 0)
    if lines:
        def status(args: object) -> int:
            for number in range(lines):
                print(f"line {number} of the status")
            return 0

        cli.HANDLERS["status"] = status
    sys.exit(cli.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
