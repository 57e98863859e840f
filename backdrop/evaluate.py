"""`backdrop eval DIR`: the quality report (core.quality.evaluate) on photos with hand-made alpha mattes;
`backdrop testset DIR`: the synthetic photos with exact mattes it measures (core.quality.testset)."""

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
    from core.quality.testset import LEMUR_DIR

    parser = subparsers.add_parser("testset", help="write the synthetic quality test set (photos + exact mattes)",
                                   description="Write the synthetic test set into FOLDER (NAME.png + NAME_alpha.png), "
                                   "then measure it with: backdrop eval FOLDER")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--lemur", type=Path, default=LEMUR_DIR, help="folder with lemur.png and lemur_alpha_fba.png")
    parser.add_argument("--only", action="append", metavar="NAME", help="write only this sample (repeatable)")
    parser.set_defaults(func=_cli_testset)


def _cli_eval(args) -> int:
    from core.quality.evaluate import evaluate, format_table
    from core.files import write_atomic

    report = evaluate(args.folder, args.segmenter, args.refine)
    print(format_table(report))
    if args.json:
        text = json.dumps(report, indent=2) + "\n"
        write_atomic(args.json, lambda stream: stream.write(text.encode("utf-8")), make_folder=True)
        print(f"wrote {args.json}")
    return 0


def _cli_testset(args) -> int:
    from core.quality.testset import build

    for path in build(args.folder, args.lemur, args.only):
        print(path)
    return 0
