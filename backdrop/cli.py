"""`backdrop`: the command's entry point, its subcommands, and what they share.

Every user-caused failure (BackdropError) prints ``error: <message>`` on stderr and exits 2, and
no output file is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import BackdropError, InputError

EXIT_USER_ERROR = 2
# `replace` and `mask` skip importing the other subcommands' modules (database, evaluation:
# ~1.5 s each), which matters for batch scripts calling the command per photo.
CORE_COMMANDS = ("replace", "mask")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:  # building the parser reads the settings, which can be invalid too
        args = build_parser(full=not (argv and argv[0] in CORE_COMMANDS)).parse_args(argv)
        return int(args.func(args) or 0)
    except BackdropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The argument parser; ``full`` adds every subcommand, not only replace and mask."""
    from backdrop import replace

    parser = argparse.ArgumentParser(prog="backdrop", description="Backdrop: replace the background of a photo.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replace.add_commands(subparsers)  # replace, mask
    if full:
        from backdrop import batch, evaluate, history, models, serve

        models.add_commands(subparsers)  # models, models fetch
        history.add_commands(subparsers)  # history, show, rerun, delete, export
        evaluate.add_commands(subparsers)  # eval
        batch.add_commands(subparsers)  # batch
        serve.add_commands(subparsers)  # serve
    return parser


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


def check_output_folder(path: Path) -> None:
    """An output path must be a .png in a folder that exists (checked before any work)."""
    from core.files import output_folder

    output_folder(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"output must be a .png file (got {str(path)!r})")


def copy_all(pairs) -> None:
    """Copy stored files to the user's paths, each atomically (no re-encoding)."""
    from core.files import write_atomic

    for source, path in pairs:
        data = Path(source).read_bytes()
        write_atomic(path, lambda stream, data=data: stream.write(data))
