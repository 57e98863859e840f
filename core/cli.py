"""`python -m core`: replace a photo's background, write its mask, and the other subcommands.

Every user-caused failure (BackdropError) prints ``error: <message>`` on stderr and exits 2, and
no output file is written: outputs are only written, atomically, once everything succeeded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from core.errors import BackdropError
from core.request import (
    DEFAULT_CONTROLNET_MODEL,
    DEFAULT_DEPTH_MODEL,
    DEFAULT_INPAINT_MODEL,
    DEFAULT_SEGMENTER,
    SAMPLER_PRESETS,
    SCHEDULERS,
    GenerationRequest,
)

EXIT_USER_ERROR = 2


CORE_COMMANDS = ("replace", "mask")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `replace` and `mask` skip importing the other subcommands' modules (database, evaluation:
    # ~1.5 s each), which matters for batch scripts calling the CLI per photo.
    parser = build_parser(full=not (argv and argv[0] in CORE_COMMANDS))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BackdropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The argument parser; ``full`` adds the subcommands other modules register via add_cli."""
    parser = argparse.ArgumentParser(prog="python -m core", description="Backdrop: replace the background of a photo.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_replace(subparsers)
    _add_mask(subparsers)
    if full:
        from core import evaluate, models
        from storage import cli as storage_cli

        models.add_cli(subparsers)  # models, models fetch
        storage_cli.add_cli(subparsers)  # history, show, rerun, delete, export
        evaluate.add_cli(subparsers)  # eval
    return parser


# ---- argument types: argparse reports these as usage errors (exit 2) -------------------------

def _int_range(low: int, high: int):
    return _in_range(int, "a whole number", low, high)


def _float_range(low: float, high: float):
    return _in_range(float, "a number", low, high)


def _in_range(convert, kind: str, low, high):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} (got {text!r})") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g} (got {text})")
        return value

    return parse


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


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
    p.add_argument("--background", "-b", default="color:#ffffff",
                   help="ai | color:#RRGGBB | gradient:#RRGGBB,#RRGGBB | blur | image:PATH | transparent "
                   "(RGBA output) (default: color:#ffffff)")
    p.add_argument("--prompt", default="", help="what the AI background shows")
    p.add_argument("--negative-prompt", default="", help="what the AI background must not show")
    p.add_argument("--seed", type=_int_range(0, 2**63 - 1), default=0, help="random seed (default 0)")
    p.add_argument("--steps", type=_int_range(1, 150), default=25, help="diffusion steps (default 25)")
    p.add_argument("--guidance", type=_float_range(0, 30), default=7.5, help="prompt guidance (default 7.5)")
    p.add_argument("--control-scale", type=_float_range(0, 2), default=0.8,
                   help="depth-control strength, 0 disables depth (default 0.8)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="dpmpp",
                   help="dpmpp (DPM-Solver++, default), ddim (the reference pipeline's, eta 1), euler_a")
    p.add_argument("--sampler-preset", choices=sorted(SAMPLER_PRESETS),
                   help="default: dpmpp 25 steps; reference: the reference pipeline's DDIM 42 steps, eta 1 "
                   "(sets --scheduler and --steps)")
    p.add_argument("--variants", type=_int_range(1, 8), default=1, help="number of AI backgrounds (default 1)")
    p.add_argument("--mask", metavar="MASK.png", help="use this mask (white = subject) instead of the automatic one")
    p.add_argument("--save-mask", metavar="MASK.png", help="also write the mask that was used (8-bit, full size)")
    p.add_argument("--save-cutout", metavar="CUTOUT.png", help="also write the cut-out subject (RGBA, full size)")
    p.add_argument("--no-spill-removal", dest="spill_removal", action="store_false",
                   help="keep the edge pixels' original colours")
    _add_quality_options(p)
    _add_model_options(p)
    p.add_argument("--json", action="store_true", help="print the request, the outputs and per-stage timings as JSON")
    p.set_defaults(func=_replace)


def _add_quality_options(p: argparse.ArgumentParser) -> None:
    from core.presets import PRESETS

    p.add_argument("--preset", choices=sorted(PRESETS), help="prompt and negative prompt of a preset "
                   "(--prompt / --negative-prompt replace its texts)")
    p.add_argument("--no-quality-negative", dest="quality_negative", action="store_false",
                   help="do not append the standard quality negative prompt")
    p.add_argument("--refine", dest="refine_matting", action="store_true",
                   help="refine the mask's edge with alpha matting (hair, fur; at most 2 s on a CPU, else the unrefined edge "
                   "is kept with a warning)")
    p.add_argument("--harmony", type=_float_range(0, 1), default=None, metavar="X",
                   help="match the subject's colour to the new background, 0-1 (default 0.5 for ai and image "
                   "backgrounds, 0 otherwise; 0 leaves the subject's pixels untouched)")
    p.add_argument("--contact-shadow", type=_float_range(0, 1), default=0.0, metavar="X", help="contact shadow opacity 0-1 (default 0)")
    p.add_argument("--cast-shadow", type=_float_range(0, 1), default=0.0, metavar="X", help="cast shadow opacity 0-1 (default 0)")
    p.add_argument("--shadow-angle", type=_float_range(-360, 360), default=135.0, metavar="DEG",
                   help="direction the cast shadow falls, degrees counter-clockwise from right (default 135: back left)")
    p.add_argument("--shadow-softness", type=_float_range(0, 1), default=0.5, metavar="X", help="cast shadow blur 0-1 (default 0.5)")


def _quality_fields(args: argparse.Namespace) -> dict:
    """Request fields of the quality options; a preset fills the prompts the user left empty."""
    from core.harmony import default_harmony
    from core.presets import get_preset
    from core.request import Background

    prompt, negative = args.prompt, args.negative_prompt
    if args.preset:
        preset = get_preset(args.preset)
        prompt, negative = prompt or preset.prompt, negative or preset.negative
    harmony = args.harmony if args.harmony is not None else default_harmony(Background.parse(args.background).kind)
    return dict(
        prompt=prompt, negative_prompt=negative, quality_negative=args.quality_negative,
        refine_matting=args.refine_matting, harmony=harmony, contact_shadow=args.contact_shadow,
        cast_shadow=args.cast_shadow, shadow_angle=args.shadow_angle, shadow_softness=args.shadow_softness,
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segmenter", default=_env("BACKDROP_SEGMENTER", DEFAULT_SEGMENTER),
                   help="rembg model name (default u2netp, or $BACKDROP_SEGMENTER)")
    p.add_argument("--inpaint-model", default=_env("BACKDROP_INPAINT_MODEL", DEFAULT_INPAINT_MODEL),
                   help="SD1.5 inpainting model: Hugging Face id or local folder")
    p.add_argument("--controlnet-model", default=_env("BACKDROP_CONTROLNET_MODEL", DEFAULT_CONTROLNET_MODEL),
                   help="depth ControlNet: Hugging Face id or local folder")
    p.add_argument("--depth-model", default=_env("BACKDROP_DEPTH_MODEL", DEFAULT_DEPTH_MODEL),
                   help="depth estimator: Hugging Face id or local folder")
    p.add_argument("--device", default=_env("BACKDROP_DEVICE", "auto"), help="auto | cpu | cuda | cuda:N | mps")


def _add_mask(subparsers) -> None:
    p = subparsers.add_parser("mask", help="write the automatic subject mask",
                              description="Write the automatic mask of INPUT: 8-bit PNG, the input's size, "
                              "255 on the subject, 0 on the background, soft only along the edge. With --point, "
                              "--negative-point or --box, Segment Anything selects a region that is added to it "
                              "(--select remove: taken out of it).")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("-o", "--output", required=True, metavar="MASK.png")
    p.add_argument("--segmenter", default=_env("BACKDROP_SEGMENTER", DEFAULT_SEGMENTER), help="rembg model name")
    _add_click_options(p)
    p.set_defaults(func=_mask)


def _add_click_options(p: argparse.ArgumentParser) -> None:
    """``mask``'s Segment Anything selection: points and a box pick a region, added to the
    automatic mask, removed from it, or replacing it (core.click_select)."""
    p.add_argument("--point", action="append", default=[], type=_numbers(2), metavar="X,Y",
                   help="a pixel on the region to select (repeatable)")
    p.add_argument("--negative-point", action="append", default=[], type=_numbers(2), metavar="X,Y",
                   help="a pixel that is not in the region (repeatable)")
    p.add_argument("--box", type=_numbers(4), metavar="X0,Y0,X1,Y1", help="a box around the region")
    p.add_argument("--select", choices=("add", "remove", "replace"), default="add",
                   help="add the region to the automatic mask (default), remove it, or use it alone")
    p.add_argument("--sam-model", default=None, help="Segment Anything model: Hugging Face id or local folder "
                   "(default $BACKDROP_SAM_MODEL or Zigeng/SlimSAM-uniform-77)")
    p.add_argument("--device", default=_env("BACKDROP_DEVICE", "auto"), help="auto | cpu | cuda | cuda:N | mps")


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


# ---- commands --------------------------------------------------------------------------------

def variant_paths(output: str | Path, count: int) -> list[Path]:
    """OUTPUT, OUTPUT-2, OUTPUT-3, ... (the suffix goes before the extension)."""
    output = Path(output)
    return [output] + [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(2, count + 1)]


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    """The GenerationRequest that ``replace``'s options describe (a sampler preset wins over
    --scheduler and --steps)."""
    sampler = SAMPLER_PRESETS[args.sampler_preset] if args.sampler_preset else {"scheduler": args.scheduler, "steps": args.steps}
    return GenerationRequest(
        background=args.background, seed=args.seed, guidance=args.guidance, control_scale=args.control_scale, **sampler,
        variants=args.variants, segmenter=args.segmenter, inpaint_model=args.inpaint_model,
        controlnet_model=args.controlnet_model, depth_model=args.depth_model, device=args.device,
        spill_removal=args.spill_removal, **_quality_fields(args),
    )


def _replace(args: argparse.Namespace) -> int:
    from core.imaging import load_image, load_mask

    request = request_from_args(args)
    outputs = variant_paths(args.output, request.variants if request.background_spec.kind == "ai" else 1)
    extras = {name: Path(path) for name, path in (("mask", args.save_mask), ("cutout", args.save_cutout)) if path}
    for path in [outputs[0], *extras.values()]:
        _check_output_folder(path)
    start = time.perf_counter()
    image = load_image(args.input)  # refuses a bad file before anything is recorded
    mask = load_mask(args.mask, image.size) if args.mask else None
    load_seconds = time.perf_counter() - start
    generation_id, result, stored = _generate(Path(args.input), request, mask)
    start = time.perf_counter()
    _copy_all([*zip(stored["result"], outputs), *((stored[name][0], path) for name, path in extras.items())])
    result.timings["load"] = load_seconds
    result.timings["save"] = time.perf_counter() - start
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "generation_id": generation_id, "request": result.request.to_dict(), "outputs": [str(p) for p in outputs],
            **{name: str(path) for name, path in extras.items()},
            "timings": {k: round(v, 4) for k, v in result.timings.items()}, "device": result.device,
            "models": result.models, "warnings": result.warnings,
        }, indent=2))
    else:
        for path in outputs:
            print(path)
    return 0


def _generate(source: Path, request, mask):
    """The one call site of the pipeline: storage records every generation (``history``), the
    input kept as its original bytes. Returns (generation id, result, {kind: [stored PNG paths]})
    so the outputs are copies of the recorded PNGs, with their parameters text chunks."""
    from storage import history
    from storage.service import generate_and_record

    generation_id, result = generate_and_record(source, request, mask, progress=_progress_printer())
    stored: dict[str, list[Path]] = {}
    for output in history.get(generation_id).outputs:
        stored.setdefault(output.kind, []).append(output.path)
    return generation_id, result, stored


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
    from core.segment import automatic_mask

    _check_output_folder(Path(args.output))
    image = load_image(args.input)
    mask = automatic_mask(image, args.segmenter)
    if args.point or args.negative_point or args.box:
        from core.click_select import combine, select_region

        region = select_region(image, args.point, args.negative_point, args.box, args.sam_model, args.device)
        mask = combine(mask, region, args.select)
    check_mask(mask)
    save_png_atomic(mask, args.output)
    print(args.output)
    return 0


def _check_output_folder(path: Path) -> None:
    from core.errors import InputError
    from core.imaging import output_folder

    output_folder(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"output must be a .png file (got {str(path)!r})")


def _copy_all(pairs) -> None:
    """Copy stored files to the user's paths, each atomically (no re-encoding)."""
    from core.imaging import write_atomic

    for source, path in pairs:
        data = Path(source).read_bytes()
        write_atomic(path, lambda stream, data=data: stream.write(data))
