"""What the `backdrop` subcommands share: the database they open (after recovering runs whose
process is gone), a request field's option, the output files they write and stored text made
safe for a terminal. The subcommands import this module, never backdrop.cli, which imports them."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from core.errors import InputError

# C0 and C1 controls, DEL, and the bidirectional overrides: what can retitle or clear a terminal,
# move its cursor, or show text in another order than it is stored
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` for a terminal: its control characters written as escapes (ESC as ``\\x1b``, a
    newline as ``\\n``), so stored text (a prompt, an error, a file name) is read, never obeyed."""
    return _CONTROLS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))


def database():
    """The database the environment names, after recovering runs whose process is gone (a
    ``replace`` killed midway): every command that opens the database does this first. Recovery
    is skipped where the database cannot be written (a read-only data folder still reads)."""
    from storage import lifecycle
    from storage.db import get_database
    from storage.errors import StorageError

    db = get_database()
    if not db.read_only:
        try:
            lifecycle.recover_stale(db)
        except StorageError:
            pass
    return db


def add_field_option(parser: argparse.ArgumentParser, spec, default=argparse.SUPPRESS, shown=None) -> None:
    """The option of one request field, from its declaration (core.request): ``--field-name``
    (or its declared flag) with the field's check; a yes/no field gets ``--x`` and ``--no-x``.
    ``default`` SUPPRESS leaves the attribute out unless the option is given (for remixes and
    what presets fill); ``shown`` is the default the help names then."""
    option = spec.flag or "--" + spec.name.replace("_", "-")
    names = [option, "-b"] if spec.name == "background" else [option]
    described = spec.help.replace("%", "%%")  # argparse formats help with %
    documented = default if shown is None else shown
    if documented is argparse.SUPPRESS or documented == "":
        shown = ""
    else:
        shown = f"default: {({True: 'yes', False: 'no'}.get(documented) if spec.type is bool else documented)}"
    if spec.type is bool:
        parser.add_argument(*names, dest=spec.name, action=argparse.BooleanOptionalAction, default=default,
                            help=described + (f" ({shown})" if shown else ""))
        return
    details = "; ".join(part for part in (spec.limits, shown) if part)

    def parse(text: str):
        try:
            return spec.parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument(*names, dest=spec.name, type=parse, default=default, choices=list(spec.choices or []) or None,
                        metavar=None if spec.choices else {int: "N", float: "X"}.get(spec.type, "TEXT"),
                        help=described + (f" ({details})" if details else ""))


def add_size_preset_option(parser: argparse.ArgumentParser) -> None:
    """``--size-preset NAME``: a named framing (core.look.framing.SIZE_PRESETS) that fills the
    framing fields, and the background of one that has its own, not given as options."""
    from core.look.framing import SIZE_PRESETS

    listed = "; ".join(f"{preset.name} ({preset.hint})" for preset in SIZE_PRESETS.values()).replace("%", "%%")
    parser.add_argument("--size-preset", choices=list(SIZE_PRESETS), metavar="NAME",
                        help=f"a named framing, one of: {listed} --canvas, --fill, --anchor, --margin and "
                        "--background given beside it win over its values")


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
