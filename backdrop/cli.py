"""`backdrop`: the command's entry point, its subcommands, and what they share.

Every user-caused failure (BackdropError) prints ``error: <message>`` on stderr and exits 2, and
no output file is written; so does every storage failure (storage.errors: a full disk, a
read-only or damaged data folder). Output cut short by its reader (``backdrop show 1 | head``)
ends quietly.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from core.errors import BackdropError, InputError

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command ended by SIGPIPE
# `replace` and `mask` skip importing the other subcommands' modules (database, evaluation:
# ~1.5 s each), which matters for batch scripts calling the command per photo.
CORE_COMMANDS = ("replace", "mask")
# C0 and C1 controls, DEL, and the bidirectional overrides: what can retitle or clear a terminal,
# move its cursor, or show text in another order than it is stored
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


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


def printable(text: object) -> str:
    """``text`` for a terminal: its control characters written as escapes (ESC as ``\\x1b``, a
    newline as ``\\n``), so stored text (a prompt, an error, a file name) is read, never obeyed."""
    return _CONTROLS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))


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


def database():
    """The database the environment names, after recovering runs whose process is gone (a
    ``replace`` killed midway): every command that opens the database does this first. Recovery
    is skipped where the database cannot be written (a read-only data folder still reads)."""
    from storage.db import get_database
    from storage.errors import StorageError
    from storage.jobs import JobQueue

    db = get_database()
    if not db.read_only:
        try:
            JobQueue(db).recover_stale()
        except StorageError:
            pass
    return db


def add_field_option(parser: argparse.ArgumentParser, spec, default=argparse.SUPPRESS) -> None:
    """The option of one request field, from its declaration (core.request): ``--field-name``
    (or its declared flag) with the field's check; a yes/no field gets ``--x`` and ``--no-x``.
    ``default`` SUPPRESS leaves the attribute out unless the option is given (for remixes)."""
    option = spec.flag or "--" + spec.name.replace("_", "-")
    names = [option, "-b"] if spec.name == "background" else [option]
    if default is argparse.SUPPRESS or default == "":
        shown = ""
    else:
        shown = f"default: {({True: 'yes', False: 'no'}.get(default, default) if spec.type is bool else default)}"
    if spec.type is bool:
        parser.add_argument(*names, dest=spec.name, action=argparse.BooleanOptionalAction, default=default,
                            help=f"{spec.help}" + (f" ({shown})" if shown else ""))
        return
    details = "; ".join(part for part in (spec.limits, shown) if part)

    def parse(text: str):
        try:
            return spec.parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument(*names, dest=spec.name, type=parse, default=default, choices=list(spec.choices or []) or None,
                        metavar=None if spec.choices else {int: "N", float: "X"}.get(spec.type, "TEXT"),
                        help=f"{spec.help}" + (f" ({details})" if details else ""))


def variant_paths(output: str | Path, count: int) -> list[Path]:
    """OUTPUT, OUTPUT-2, OUTPUT-3, ... (the suffix goes before the extension)."""
    output = Path(output)
    return [output] + [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(2, count + 1)]


def check_outputs(outputs: dict[str, Path | None], inputs: tuple[str | Path | None, ...] = ()) -> None:
    """The files a command will write (option -> path), checked before any work: each a .png in
    a folder that exists and can be written, not a folder or a device, none the same file as
    another or as one of ``inputs``."""
    from core.files import check_target, same_file

    given = [(option, Path(path)) for option, path in outputs.items() if path is not None]
    for option, path in given:
        if path.suffix.lower() != ".png":
            raise InputError(f"{option} must be a .png file (got {str(path)!r})")
        check_target(path)
        for source in inputs:
            if source is not None and same_file(path, source):
                raise InputError(f"{option} {str(path)!r} is an input of this command: writing it would destroy "
                                 "the input; choose another name")
    for i, (option, path) in enumerate(given):
        for other, other_path in given[i + 1:]:
            if same_file(path, other_path):
                raise InputError(f"{option} and {other} are the same file {str(path)!r}: one would replace the "
                                 "other; give each its own name")


def stage_copies(pairs):
    """The user's copies of stored files (no re-encoding), staged to be renamed into place together."""
    from core.files import StagedFiles

    staged = StagedFiles()
    for source, path in pairs:
        staged.stage(path, Path(source).read_bytes())
    return staged
