"""`backdrop serve`: the HTTP API (backdrop.api) on uvicorn, and what runs its queue.

By default the jobs run in this process, one at a time, as in the app; with a Ray cluster
(``--ray ADDRESS`` or BACKDROP_RAY_ADDRESS) they run on Ray workers (storage.ray_workers);
``--no-worker`` leaves them to another process serving the same database (the app, another
``serve``). It listens on 127.0.0.1 unless ``--host`` says otherwise, which needs accounts
(storage.access, as for the app; backdrop.auth: API tokens).
"""

from __future__ import annotations

import argparse
import sys

from core.errors import InputError


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the HTTP API (on this machine: http://127.0.0.1:8000, docs at /docs)",
        description="Serve the HTTP API over the same history and job queue as the app (BACKDROP_DATA_DIR, "
        "BACKDROP_DATABASE_URL). The OpenAPI documentation is at /docs.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only; "
                   "another address needs accounts, whose API tokens the clients send)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (the Host a reverse proxy forwards); besides it, only "
                   "the listening address, localhost and 127.0.0.1 are answered (repeatable)")
    p.add_argument("--no-worker", action="store_true",
                   help="only queue jobs: another process serving the same database runs them")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the jobs on Ray workers: local (a cluster on this machine), auto (the cluster this "
                   "machine joined with `ray start`) or the head node's HOST:PORT (default: BACKDROP_RAY_ADDRESS; "
                   "none: in this process)")
    p.add_argument("--ray-workers", type=_positive, metavar="N", default=None,
                   help="how many Ray workers (default: one per GPU in the cluster, else one; BACKDROP_RAY_WORKERS)")
    p.set_defaults(func=_serve)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {text!r})")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    from backdrop.common import database
    from storage.access import Policy

    db, policy = database(), Policy.read()  # the secrets files are read here, once
    problem = policy.refusal(args.host, db=db)
    if problem:
        raise InputError(problem)
    import uvicorn

    from backdrop.api import create_app
    from storage.jobs import JobQueue
    from storage.serving import start_serving
    from storage.settings import base_request

    queue = JobQueue(db)
    executor = None
    if not args.no_worker:
        executor = start_serving(queue, warm_up=base_request().replace(background="ai"), ray_address=args.ray,
                                 ray_workers=args.ray_workers)
    host = f"[{args.host}]" if ":" in args.host else args.host
    who = "API tokens of the accounts" if policy.mode(db) != "local" else "this machine only, no accounts"
    print(f"Backdrop API on http://{host}:{args.port} (documentation: /docs; {who}), data in {db.data_dir}",
          file=sys.stderr, flush=True)
    uvicorn.run(create_app(queue, executor, listen=args.host, allowed_hosts=tuple(args.allow_host), policy=policy),
                host=args.host, port=args.port, log_level="info")
    return 0
