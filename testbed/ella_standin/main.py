"""Entry point of an ELLA stand-in (test double) image: ``python3 IMAGE.sif COMMAND``."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from ella_standin import cli, server
from ella_standin.encoding import to_json
from ella_standin.errors import ExitCode, StandinError
from ella_standin.image import STANDIN_DESCRIPTION, Image
from ella_standin.settings import Settings, debug_enabled

PROG = "ella-standin"
USAGE = f"""usage: python3 IMAGE.sif COMMAND [ARGS...]

{STANDIN_DESCRIPTION}: behaves like ELLA where ella-deploy touches it. It is not ELLA.

commands:
  run                  the API server (what 'singularity run IMAGE' starts)
  inspect [--json]     image labels (what 'singularity inspect IMAGE' shows)
  ella-cli ARGS...     ELLA's CLI (what 'singularity exec IMAGE ella-cli ...' runs)

environment:
  DB_URL                    libpq URI, e.g. postgresql://ella@db:5432/ella; the password
                            comes from PGPASSFILE (or ~/.pgpass), never from the URL
  API_HOST, API_PORT        where 'run' listens (default 0.0.0.0, 3114)
  ELLA_API_LOG              access log of 'run' (default ./logs/api.log)
  ELLA_STANDIN_BOOT_DELAY   seconds 'run' takes to boot (default 0.5)
  ELLA_STANDIN_DEBUG=1      tracebacks instead of one-line errors
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return ExitCode.OK if args else ExitCode.USAGE
    command, rest = args[0], args[1:]
    prog = cli.PROG if command == "ella-cli" else PROG
    try:
        return _dispatch(command, rest)
    except StandinError as error:
        if debug_enabled():
            traceback.print_exc()
        print(f"{prog}: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; no point in a message nobody reads.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILURE
    except Exception as error:
        if debug_enabled():
            raise
        print(f"{prog}: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return ExitCode.FAILURE


def _dispatch(command: str, args: list[str]) -> int:
    image = Image.load()
    if command == "run":
        if args:
            raise StandinError(f"run takes no arguments, got {' '.join(args)}", ExitCode.USAGE)
        return server.run(image, Settings.from_env())
    if command == "inspect":
        return _inspect(image, args)
    if command == "ella-cli":
        return cli.main(image, Settings.from_env(), args)
    raise StandinError(
        f"unknown command {command!r}: expected run, inspect or ella-cli", ExitCode.USAGE
    )


def _inspect(image: Image, args: list[str]) -> int:
    if args not in ([], ["--json"]):
        raise StandinError(f"usage: inspect [--json], got {' '.join(args)}", ExitCode.USAGE)
    labels = image.labels()
    if args:
        # The shape of `singularity inspect --json`.
        print(to_json({"data": {"attributes": {"labels": labels}}, "type": "container"}, indent=4))
    else:
        for key, value in labels.items():
            print(f"{key}: {value}")
    return ExitCode.OK
