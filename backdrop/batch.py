"""`backdrop batch DIR -o OUTDIR`: every photo in a folder with one recipe, with a progress bar.

With a Ray cluster (``--ray ADDRESS`` or BACKDROP_RAY_ADDRESS) the photos run as Ray tasks in
parallel over the cluster (storage.ray_workers.map_generations), otherwise one after the other
in this process. Every photo is recorded as ``replace`` records it (the History shows it); an
unreadable photo is refused before anything is recorded, and the others go on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from backdrop.common import stage_copies, variant_paths
from core.errors import InputError


def add_commands(subparsers) -> None:
    from backdrop.replace import add_request_options

    p = subparsers.add_parser(
        "batch", help="replace the background of every photo in a folder (on Ray when configured)",
        description="Replace the background of every photo (JPEG, PNG, WebP) in DIR with the same recipe and write "
        "OUTDIR/NAME.png for each (variants: NAME-2.png, ...). With a Ray cluster the photos run in parallel as Ray "
        "tasks. Exits with status 2 when a photo was refused or failed, after doing the others.")
    p.add_argument("folder", metavar="DIR", help="the folder of photos (not its subfolders)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="where to write the results (created)")
    add_request_options(p)
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on a Ray cluster: local, auto or HOST:PORT (default: BACKDROP_RAY_ADDRESS; none: "
                   "in this process)")
    p.set_defaults(func=_batch)


def photos_in(folder: Path) -> list[Path]:
    from core.imaging import PHOTO_SUFFIXES

    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder")
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise InputError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {str(folder)!r}")
    return photos


def _batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backdrop.replace import request_from_args
    from core.imaging import load_image
    from storage import history
    from storage.ray_workers import configured_address

    request, picture_path = request_from_args(args)
    picture = picture_path.read_bytes() if picture_path else None
    if picture is not None:
        load_image(picture, what="background picture")
    photos = photos_in(Path(args.folder))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    bar = tqdm(total=len(photos), unit="photo", file=sys.stderr, desc="batch", dynamic_ncols=True)

    def readable() -> Iterator[tuple[str, bytes]]:
        for path in photos:
            data = path.read_bytes()
            try:
                load_image(data, what=path.name)
            except InputError as exc:  # refused: nothing recorded
                failed.append(path.name)
                bar.write(f"error: {exc}", file=sys.stderr)
                bar.update()
                continue
            yield path.name, data

    address = configured_address(args.ray)
    if address:
        from storage.ray_workers import map_generations

        finished = map_generations(readable(), request, picture, address=address)
    else:
        finished = _in_process(readable(), request, picture)
    used: set[str] = set()
    done = 0
    for name, generation_id, error in finished:
        if error is None:
            results = history.get(generation_id).results
            targets = variant_paths(output / _free_name(Path(name), generation_id, used), len(results))
            used.update(path.name for path in targets)
            stage_copies(zip((o.path for o in results), targets)).publish()
            done += 1
        else:
            failed.append(name)
            bar.write(f"error: {name}: {error}", file=sys.stderr)
        bar.set_postfix(done=done, failed=len(failed))
        bar.update()
    bar.close()
    print(f"{done} of {len(photos)} photo(s) done in {output}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 2 if failed else 0


def _in_process(photos, request, picture) -> Iterator[tuple[str, int | None, str | None]]:
    from storage.service import error_text, generate_and_record

    for name, data in photos:
        try:
            generation_id, _ = generate_and_record(data, request, picture=picture)
        except Exception as exc:  # noqa: BLE001 - recorded as failed; the batch goes on
            yield name, None, error_text(exc)
            continue
        yield name, generation_id, None


def _free_name(photo: Path, generation_id: int, used: set[str]) -> str:
    """``STEM.png``; a second photo with the same stem (a.jpg beside a.png) gets its suffix
    (a-png.png), and failing that its generation id."""
    stem, suffix = photo.stem, photo.suffix.lstrip(".").lower()
    candidates = (f"{stem}.png", f"{stem}-{suffix}.png", f"{stem}-{generation_id}.png")
    return next((name for name in candidates if name not in used), candidates[-1])
