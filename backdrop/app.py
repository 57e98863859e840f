"""`backdrop app`: start the browser app (``streamlit run streamlit_app.py``) on a host and port,
refusing to serve a network without sign-in (storage.access). `make run` uses it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.errors import InputError

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("app", help="start the browser app (127.0.0.1 unless --host says otherwise)",
                              description="Start the app with Streamlit. It listens on 127.0.0.1 (this machine "
                              "only) unless --host names another address (0.0.0.0: every interface), which needs "
                              "accounts (`backdrop users add NAME --admin`) or an OIDC provider for st.login. "
                              "Arguments after -- go to the app (e.g. -- --batch-dir DIR).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("app_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_app)


LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def command(host: str, port: int, app_args: list[str]) -> list[str]:
    """``streamlit run`` on ``host``. The names it answers to (server.allowedHosts: the Host a
    browser sends): on this machine, its own names only, so a page under another name that
    resolves here (DNS rebinding) gets no session; beyond it, any name (which a network's
    clients use is not known here), where sign-in is required."""
    from storage import access

    rest = app_args[1:] if app_args[:1] == ["--"] else app_args
    names = [*LOCAL_NAMES, *([host.strip("[]")] if host.strip("[]") not in LOCAL_NAMES else [])] \
        if access.is_loopback(host) else ["*"]
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            *[arg for name in names for arg in ("--server.allowedHosts", name)], *(["--", *rest] if rest else [])]


def _app(args: argparse.Namespace) -> int:
    from backdrop.common import database
    from storage.access import Policy

    if not APP.is_file():
        raise InputError(f"the app's script {APP} is not here: run `backdrop app` from a checkout of Backdrop")
    db, policy = database(), Policy.read()
    problem = policy.refusal(args.host, db=db)
    if problem:
        raise InputError(problem)
    argv = command(args.host, args.port, args.app_args)
    print(f"Backdrop on http://{args.host}:{args.port} ({policy.mode(db)} sign-in)", file=sys.stderr, flush=True)
    os.execv(argv[0], argv)
    return 0
