"""`backdrop replace` and `backdrop mask`: a photo's new background, and its automatic mask.

``replace`` has one option per request field, made from the field's declaration
(core.request.FIELDS); the model and device options start from the saved settings
(storage.settings), as the app does. Outputs are only written, atomically, once everything
succeeded, and the generation is only recorded done once they are: a bad input or parameter, or
an output that cannot be written, writes nothing and leaves the generation failed with its cause.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from backdrop.common import add_field_option, add_size_preset_option, check_outputs, stage_copies, variant_paths
from core.errors import InputError
from core.look.backgrounds import KINDS, Background
from core.models.slots import SAM_MODEL
from core.look.framing import FRAMING_FIELDS, with_size_preset
from core.request import FIELD, FIELDS, SAMPLER_PRESETS, GenerationRequest


def add_commands(subparsers) -> None:
    _add_replace(subparsers)
    _add_mask(subparsers)


def _defaults() -> dict:
    from storage.settings import base_request

    base = base_request()
    return {spec.name: getattr(base, spec.name) for spec in FIELDS}


def _background_option(text: str) -> str:
    """A background spec, or ``image:PATH``: the picture a command-line run stores."""
    if text.startswith("image:"):
        if not text[len("image:"):]:
            raise argparse.ArgumentTypeError("image background needs a path, as image:PATH")
        return text
    try:
        return FIELD["background"].parse(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_replace(subparsers) -> None:
    p = subparsers.add_parser(
        "replace",
        help="replace the background of a photo",
        description="Cut out the subject of INPUT and put it on a new background; writes OUTPUT "
        "(PNG, the input's full size). With --background ai --variants N the outputs are OUTPUT, then OUTPUT-2, "
        "OUTPUT-3, ... (e.g. out.png, out-2.png).",
    )
    p.add_argument("input", metavar="INPUT", help="the photo (JPEG, PNG, WebP, ...)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT.png", help="where to write the result (PNG)")
    add_request_options(p)
    p.add_argument("--mask", metavar="MASK.png", help="use this mask (white = subject) instead of the automatic one")
    p.add_argument("--save-mask", metavar="MASK.png", help="also write the mask that was used (8-bit, full size)")
    p.add_argument("--save-cutout", metavar="CUTOUT.png", help="also write the cut-out subject (RGBA, full size)")
    p.add_argument("--json", action="store_true",
                   help="print the request, the run record, the outputs and per-stage timings as JSON")
    p.set_defaults(func=_replace)


def add_request_options(p: argparse.ArgumentParser) -> None:
    """One option per request field (the model and device ones starting from the saved
    settings), and the sampler, prompt and size presets: what ``request_from_args`` reads. The
    fields a size preset sets are left out of the arguments unless given, so a preset fills only
    those the command line does not name."""
    from core.presets import PRESETS

    defaults = _defaults()
    for spec in FIELDS:
        if spec.name == "background":
            p.add_argument("-b", "--background", type=_background_option, default=argparse.SUPPRESS,
                           help=f"{spec.help.replace('| image |', '| image:PATH |')} (default: {spec.default}; "
                           "transparent gives an RGBA cut-out)")
        elif spec.name in FRAMING_FIELDS:
            add_field_option(p, spec, shown=spec.default)
        else:
            add_field_option(p, spec, defaults[spec.name])
    p.add_argument("--sampler-preset", choices=sorted(SAMPLER_PRESETS),
                   help="default: dpmpp 25 steps; reference: the reference pipeline's DDIM 42 steps, eta 1 "
                   "(sets --scheduler and --steps)")
    p.add_argument("--preset", type=_preset, metavar="NAME",
                   help="an AI background's prompt and negative prompt from a preset (--prompt / --negative-prompt "
                   "replace its texts; other backgrounds have no prompt): "
                   + ", ".join(preset.label.lower() for preset in PRESETS.values()))
    add_size_preset_option(p)


def _preset(name: str):
    from core.presets import get_preset

    try:
        return get_preset(name)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_mask(subparsers) -> None:
    p = subparsers.add_parser("mask", help="write the automatic subject mask",
                              description="Write the automatic mask of INPUT: 8-bit PNG, the input's size, "
                              "255 on the subject, 0 on the background, soft only along the edge. With --point, "
                              "--negative-point or --box, Segment Anything selects a region that is added to it "
                              "(--select remove: taken out of it).")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("-o", "--output", required=True, metavar="MASK.png")
    defaults = _defaults()
    add_field_option(p, FIELD["segmenter"], defaults["segmenter"])
    _add_click_options(p, defaults)
    p.set_defaults(func=_mask)


def _add_click_options(p: argparse.ArgumentParser, defaults: dict) -> None:
    """``mask``'s Segment Anything selection: points and a box pick a region, added to the
    automatic mask, removed from it, or replacing it (core.masks.click_select)."""
    from storage.settings import load_settings

    p.add_argument("--point", action="append", default=[], type=_numbers(2), metavar="X,Y",
                   help="a pixel on the region to select (repeatable)")
    p.add_argument("--negative-point", action="append", default=[], type=_numbers(2), metavar="X,Y",
                   help="a pixel that is not in the region (repeatable)")
    p.add_argument("--box", type=_numbers(4), metavar="X0,Y0,X1,Y1", help="a box around the region")
    p.add_argument("--select", choices=("add", "remove", "replace"), default="add",
                   help="add the region to the automatic mask (default), remove it, or use it alone")
    add_field_option(p, SAM_MODEL, load_settings()[SAM_MODEL.name])
    add_field_option(p, FIELD["device"], defaults["device"])


def _numbers(count: int):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count or not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"must be {count} numbers separated by commas (got {text!r})")
        return values

    return parse


def request_from_args(args: argparse.Namespace) -> tuple[GenerationRequest, Path | None]:
    """The request ``replace``'s options describe, and the background picture's path for
    ``image:PATH``. A sampler preset wins over --scheduler and --steps; a prompt preset fills an AI
    background's prompts left empty (another background has none to fill: it is ignored, and
    said so); a size preset fills the framing fields (and its background) not given."""
    given = {spec.name: getattr(args, spec.name) for spec in FIELDS if hasattr(args, spec.name)}
    values = {spec.name: spec.default for spec in FIELDS} | with_size_preset(given, args.size_preset)
    if args.sampler_preset:
        values.update(SAMPLER_PRESETS[args.sampler_preset])
    kind = values["background"].partition(":")[0]
    if args.preset and KINDS[kind].generated:
        values["prompt"] = values["prompt"] or args.preset.prompt
        values["negative_prompt"] = values["negative_prompt"] or args.preset.negative
    elif args.preset:
        print(f"note: --preset fills an AI background's prompts; a {kind} background has none, so it is not used",
              file=sys.stderr)
    picture = None
    if values["background"].startswith("image:"):
        picture = Path(values["background"][len("image:"):])
        values["background"] = Background("image").spec()
    request = GenerationRequest(**values)
    if values["enhance_prompt"] and not request.background_spec.declared.generated:
        raise InputError(f"--enhance-prompt: only the AI background reads a prompt (this one is "
                         f"{request.background_spec.kind!r})")
    return request, picture


def _replace(args: argparse.Namespace) -> int:
    from core.imaging import load_image, load_mask

    request, picture = request_from_args(args)
    if args.variants > 1 and not request.background_spec.declared.variants:
        raise InputError(f"--variants {args.variants}: only the AI background makes variants (this one is "
                         f"{request.background_spec.kind!r})")
    outputs = variant_paths(args.output, request.variants)
    extras = {name: Path(path) for name, path in (("mask", args.save_mask), ("cutout", args.save_cutout)) if path}
    check_outputs({**{("-o" if i == 0 else f"variant {i + 1}"): path for i, path in enumerate(outputs)},
                   **{f"--save-{name}": path for name, path in extras.items()}},
                  inputs=(args.input, args.mask, picture))
    start = time.perf_counter()
    image = load_image(args.input)  # refuses a bad file before anything is recorded
    mask = load_mask(args.mask, image.size) if args.mask else None
    if picture is not None:
        load_image(picture, what="background picture")
    load_seconds = time.perf_counter() - start

    def deliver(stored: dict[str, list[Path]]):
        return stage_copies([*zip(stored["result"], outputs), *((stored[name][0], path) for name, path in extras.items())])

    start = time.perf_counter()
    generation_id, result = _generate(Path(args.input), request, mask, picture, deliver)
    result.timings["load"] = load_seconds
    result.timings["save"] = time.perf_counter() - start - result.timings.get("total", 0.0)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    assistant = result.record.get("prompt_assistant")
    if assistant:  # the text the user did not type, and what it cost
        print(f"prompt assistant ({assistant['model']}, {assistant['tokens']} tokens in {assistant['seconds']:.1f} s"
              f"{', written earlier' if assistant['cached'] else ''}): {result.record['prompt']}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "generation_id": generation_id, "request": request.to_dict(), "record": result.record,
            "outputs": [str(p) for p in outputs], **{name: str(path) for name, path in extras.items()},
            "timings": {k: round(v, 4) for k, v in result.timings.items()}, "device": result.device,
            "models": result.models, "warnings": result.warnings,
        }, indent=2))
    else:
        for path in outputs:
            print(path)
    return 0


def _generate(source: Path, request, mask, picture: Path | None, deliver):
    """The one call site of the pipeline: storage records every generation (``history``), the
    input and picture kept as their original bytes. ``deliver`` stages the user's files from the
    recorded PNGs (copies, with their parameters text chunks) before the generation is marked
    done. Returns (generation id, result)."""
    from backdrop.common import database
    from storage.service import generate_and_record

    return generate_and_record(source, request, mask, progress=_progress_printer(), picture=picture,
                               deliver=deliver, db=database(), cut_out=True)


def _progress_printer():
    """Diffusion steps on stderr when it is a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        return None

    def progress(stage: str, done: int, total: int) -> None:
        if total > 1:
            print(f"\r{stage}: {done}/{total}", end="\n" if done >= total else "", file=sys.stderr, flush=True)

    return progress


def _mask(args: argparse.Namespace) -> int:
    from core.imaging import check_mask, load_image, save_png_atomic
    from core.masks.segment import automatic_mask

    check_outputs({"-o": Path(args.output)}, inputs=(args.input,))
    image = load_image(args.input)
    mask = automatic_mask(image, args.segmenter)
    if args.point or args.negative_point or args.box:
        from core.masks.click_select import combine, select_region

        region = select_region(image, args.point, args.negative_point, args.box, args.sam_model, args.device)
        mask = combine(mask, region, args.select)
    check_mask(mask)
    save_png_atomic(mask, args.output)
    print(args.output)
    return 0
