"""`backdrop`: the command's entry point and its subcommands (what they share is backdrop.common).

Every user-caused failure (BackdropError) prints ``error: <message>`` on stderr and exits 2, and
no output file is written; so does every storage failure (storage.errors: a full disk, a
read-only or damaged data folder). Output cut short by its reader (``backdrop show 1 | head``)
ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys

from backdrop.common import printable
from core.errors import BackdropError

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command ended by SIGPIPE
# `replace` and `mask` skip importing the other subcommands' modules (database, evaluation:
# ~1.5 s each), which matters for batch scripts calling the command per photo.
CORE_COMMANDS = ("replace", "mask")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:  # building the parser reads the settings, which can be invalid too
        args = build_parser(full=not (argv and argv[0] in CORE_COMMANDS)).parse_args(argv)
        return int(args.func(args) or 0)
    except BackdropError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away: nothing more can be printed, and flushing at exit must not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The argument parser; ``full`` adds every subcommand, not only replace and mask."""
    from backdrop import replace

    parser = argparse.ArgumentParser(prog="backdrop", description="Backdrop: replace the background of a photo.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replace.add_commands(subparsers)  # replace, mask
    if full:
        from backdrop import app, batch, doctor, evaluate, history, models, serve, users

        models.add_commands(subparsers)  # models, models fetch
        history.add_commands(subparsers)  # history, show, rerun, cancel, delete, export
        evaluate.add_commands(subparsers)  # eval
        users.add_commands(subparsers)  # users add | list | passwd | remove | token
        doctor.add_commands(subparsers)  # doctor
        app.add_commands(subparsers)  # app
        batch.add_commands(subparsers)  # batch
        serve.add_commands(subparsers)  # serve
    return parser
