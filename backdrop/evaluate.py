"""`backdrop eval DIR`: the quality report (core.evaluate) on photos with hand-made alpha mattes."""

from __future__ import annotations

import json
from pathlib import Path


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="quality report on photos with ground-truth alpha mattes")
    parser.add_argument("folder", type=Path, help="folder of NAME.png + NAME_alpha*.png pairs")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    parser.add_argument("--segmenter", action="append", help="rembg model to evaluate (repeatable; default: every installed one)")
    parser.add_argument("--refine", choices=("off", "on", "both"), default="both", help="matting refinement (default: both)")
    parser.set_defaults(func=_cli_eval)


def _cli_eval(args) -> int:
    from core.evaluate import evaluate, format_table
    from core.files import write_atomic

    report = evaluate(args.folder, args.segmenter, args.refine)
    print(format_table(report))
    if args.json:
        text = json.dumps(report, indent=2) + "\n"
        write_atomic(args.json, lambda stream: stream.write(text.encode("utf-8")), make_folder=True)
        print(f"wrote {args.json}")
    return 0
