"""`backdrop history | show | rerun | cancel | delete | export`: the generation history from the
command line. The database and image store come from BACKDROP_DATA_DIR / BACKDROP_DATABASE_URL.
The command line is the machine's own: it sees every generation, whoever made it. On a disk
filled to the last byte, ``history``, ``show``, ``cancel`` and ``delete`` still run (they use
the data folder's space reserve, storage.space), so space can be freed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backdrop.common import (add_field_option, add_size_preset_option, check_outputs, database, printable,
                             stage_copies, variant_paths)
from core.errors import BackdropError
from core.look.backgrounds import KINDS
from core.look.framing import with_size_preset
from core.request import FIELDS, SCHEMA_VERSION
from storage.lifecycle import INTERRUPTED, STATUSES, UNFINISHED, Status, describe_text


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("history", help="list recorded generations, newest first")
    _add_filters(p)
    p.add_argument("--limit", type=_whole(1), default=20, help="how many (default 20)")
    p.add_argument("--offset", type=_whole(0), default=0, help="skip this many (paging)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=_history)

    p = subparsers.add_parser("show", help="show one generation: parameters, outputs, timings, lineage")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_show)

    p = subparsers.add_parser("rerun", help="run a stored generation again (same seed: the same image)",
                              description="Run generation ID again from its stored request, input, mask and "
                              "background picture, recorded as its child. Any of replace's parameter options "
                              "(--seed, --prompt, --harmony, ...) changes that parameter: a remix.")
    p.add_argument("id", type=int)
    p.add_argument("-o", "--output", metavar="OUTPUT.png", help="also write the result here (variants: OUTPUT-2, ...)")
    for spec in FIELDS:
        add_field_option(p, spec)
    add_size_preset_option(p)
    p.set_defaults(func=_rerun)

    p = subparsers.add_parser("cancel", help="cancel a queued or running generation",
                              description="Cancel generation ID: a queued one at once; a running one stops at its "
                              "next step (in the app, a worker or another `backdrop` process); one whose process is "
                              "gone (killed) is marked failed now.")
    p.add_argument("id", type=int)
    p.set_defaults(func=_cancel)

    p = subparsers.add_parser("delete", help="delete a generation and the files only it used")
    p.add_argument("id", type=int)
    p.set_defaults(func=_delete)

    p = subparsers.add_parser("export", help="write generations (ids, or a filtered set) to a zip with a JSON of their records")
    p.add_argument("ids", type=int, nargs="*", metavar="ID")
    _add_filters(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.zip")
    p.set_defaults(func=_export)


def _whole(low: int):
    """A whole number from ``low`` to the largest the database stores."""
    from storage.history import MAX_ID

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= MAX_ID:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {MAX_ID} (got {text!r})")
        return value

    return parse


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--search", metavar="TEXT", help="text in the prompt")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--background", metavar="KIND", choices=list(KINDS), help=", ".join(KINDS))
    p.add_argument("--favourite", action="store_true", default=None, help="favourites only")


def _filters(args: argparse.Namespace) -> dict:
    return {"search": args.search, "status": args.status, "background": args.background, "favourite": args.favourite}


def _history(args: argparse.Namespace) -> int:
    from storage import history

    db = database()
    views = db.retry_when_full(lambda: history.list_generations(limit=args.limit, offset=args.offset, db=db,
                                                                **_filters(args)))
    if args.json:
        print(json.dumps([v.to_dict() for v in views], indent=2))
        return 0
    if not views:
        total = history.count_generations(db=db)
        if not total:
            print("no generations recorded", file=sys.stderr)
        elif any(value is not None for value in _filters(args).values()):
            print(f"no generations match these filters ({total} recorded)", file=sys.stderr)
        else:
            print(f"no generations past the first {args.offset} ({total} recorded)", file=sys.stderr)
        return 0
    print(f"{'ID':>6}  {'CREATED (UTC)':19}  {'STATUS':9}  {'BACKGROUND':10}  {'SEED':>10}  PROMPT")
    for v in views:
        prompt = v.prompt if len(v.prompt) <= 50 else v.prompt[:49] + "…"
        fav = "*" if v.favourite else " "
        print(f"{v.id:>6}{fav} {v.created_at:%Y-%m-%d %H:%M:%S}  {v.status:9}  {v.background_kind:10}  "
              f"{v.request.get('seed', ''):>10}  {printable(prompt)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from storage import history

    db = database()
    v = db.retry_when_full(lambda: history.get(args.id, db=db))
    if args.json:
        print(json.dumps(v.to_dict(), indent=2))
        return 0

    def say(line: str) -> None:  # stored text (prompts, errors, the run record) is printed escaped
        print(printable(line))

    progress = f" ({v.progress_stage} {v.progress_step}/{v.progress_total})" if v.status == Status.RUNNING else ""
    late = (" (the cancel came too late: it had finished its last step)"
            if v.status == Status.DONE and v.cancel_requested else "")
    say(f"generation {v.id}: {v.status}{progress}{late}")
    if v.error:
        say(f"error: {v.error}")
    say(f"created {v.created_at.isoformat()}, finished {v.finished_at.isoformat() if v.finished_at else '-'}, "
        f"device {v.device or '-'}, favourite {'yes' if v.favourite else 'no'}")
    if v.worker:
        say(f"{'runs on' if v.status == Status.RUNNING else 'ran on'}: {describe_text(v.worker)}")
    if v.ancestors or v.children:
        say(f"lineage: ancestors {v.ancestors or '-'}, children {v.children or '-'}")
    request = v.generation_request()
    say(f"request (version {SCHEMA_VERSION}" + (f", upgraded from version {v.request.get('version', 1)}"
                                                if v.request.get("version", 1) != SCHEMA_VERSION else "") + "):")
    for spec in FIELDS:
        value = getattr(request, spec.name)
        say(f"  {spec.label}: {value}" + ("" if value == spec.default else "  (default " + str(spec.default) + ")"))
    if v.record:
        say("what ran:")
        for key, value in v.record.items():
            if isinstance(value, dict):  # the prompt assistant's run: one line each
                say(f"  {key}:")
                for inner, item in value.items():
                    say(f"    {inner}: {item}")
            else:
                say(f"  {key}: {value}")
    if v.models:
        say("models: " + ", ".join(f"{slot}={m.get('id')}@{m.get('revision') or '-'}" for slot, m in v.models.items()))
    if v.timings:
        say("timings: " + ", ".join(f"{k} {t:.3f}s" for k, t in v.timings.items()))
    for w in v.warnings:
        say(f"warning: {w}")
    for o in v.outputs:
        say(f"{o.kind}[{o.index}]: {o.path} ({o.width}x{o.height} {o.format})")
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from storage import history, service

    changes = with_size_preset({spec.name: getattr(args, spec.name) for spec in FIELDS if hasattr(args, spec.name)},
                               args.size_preset)
    db = database()
    old = history.get(args.id, db=db)  # its results, to compare with: it may be deleted while this runs
    if args.output:
        check_outputs({"-o": Path(args.output)})
    generation_id, _result = service.rerun(args.id, db=db, deliver=_copies_to(args.output) if args.output else None,
                                           **changes)
    new = history.get(generation_id, db=db)
    print(f"generation {generation_id} (re-run of {args.id}{', remix' if changes else ''})")
    if not changes and old.results:
        if all(o.path.exists() for o in old.results):
            same = all(_pixels_equal(a.path, b.path) for a, b in zip(old.results, new.results))
            print(f"identical to generation {args.id}: {'yes' if same else 'no'}")
        else:
            print(f"generation {args.id} was deleted while this ran: not compared")
    paths = variant_paths(args.output, len(new.results)) if args.output else [out.path for out in new.results]
    for path in paths:
        print(path)
    return 0


def _copies_to(output: str):
    """Delivery of a re-run's results as copies at ``output`` (out.png, out-2.png, ...)."""

    def deliver(stored: dict[str, list[Path]]):
        return stage_copies(zip(stored["result"], variant_paths(output, len(stored["result"]))))

    return deliver


def _cancel(args: argparse.Namespace) -> int:
    from storage import history
    from storage.jobs import JobQueue

    db = database()  # a run whose process is gone has just been marked failed
    before = history.get(args.id, db=db)
    if before.status in UNFINISHED:
        db.retry_when_full(lambda: JobQueue(db).cancel(args.id))
    view = history.get(args.id, db=db)
    if view.status == Status.RUNNING:
        print(f"generation {args.id}: asked to stop; it stops at its next step")
    elif before.status == Status.RUNNING and view.status == Status.CANCELLED:  # it stopped before we looked again
        print(f"generation {args.id}: asked to stop; it has stopped (cancelled)")
    elif before.status == Status.QUEUED and view.status == Status.CANCELLED:
        print(f"generation {args.id}: cancelled")
    elif before.status == Status.RUNNING and view.status == Status.DONE:
        print(f"generation {args.id}: too late, it had finished its last step (done)")
    elif view.error == INTERRUPTED:
        print(f"generation {args.id}: its process had stopped; marked failed ({INTERRUPTED})")
    else:
        raise BackdropError(f"generation {args.id} already ended ({view.status}"
                            + (f": {view.error}" if view.error else "") + "): nothing to cancel")
    return 0


def _load_png(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image


def _pixels_equal(a: Path, b: Path) -> bool:
    import numpy as np
    from PIL import Image

    with Image.open(a) as x, Image.open(b) as y:
        return x.size == y.size and x.mode == y.mode and np.array_equal(np.asarray(x), np.asarray(y))


def _delete(args: argparse.Namespace) -> int:
    from storage import history

    db = database()
    removed = db.retry_when_full(lambda: history.delete(args.id, db=db))
    print(f"deleted generation {args.id}; removed {len(removed)} file(s) nothing else used")
    return 0


def _export(args: argparse.Namespace) -> int:
    from storage import history

    db = database()
    path, count = history.export(args.output, ids=args.ids or None, db=db, **_filters(args))
    print(f"{path}: {count} generation(s)")
    return 0
