"""`backdrop users add | list | passwd | remove | token`: the accounts that may use a served app
(storage.users). Passwords are read from the terminal (asked twice) or, when standard input is
not a terminal, from its first line, never from the command line (other users could read it
in the process list)."""

from __future__ import annotations

import argparse
import getpass
import sys

from backdrop.common import database
from core.errors import InputError


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("users", help="accounts for the app served to a network, and API tokens",
                              description="Accounts that may sign in to the app (and, with a token, to the HTTP "
                              "API). Once one exists the app asks everyone to sign in; serving to a network "
                              "(`backdrop app --host 0.0.0.0`) needs one.")
    commands = p.add_subparsers(dest="users_command", required=True, metavar="COMMAND")

    c = commands.add_parser("add", help="add an account (the password is asked, or read from standard input)")
    c.add_argument("name", help="login name (or the e-mail address the OIDC provider gives, with --no-password)")
    c.add_argument("--admin", action="store_true", help="sees every generation and the Models page")
    c.add_argument("--no-password", action="store_true",
                   help="an account that signs in through the OIDC provider only (st.login)")
    c.set_defaults(func=_add)

    c = commands.add_parser("list", help="the accounts, their role and how many generations each owns")
    c.set_defaults(func=_list)

    c = commands.add_parser("passwd", help="set a new password (the account's open sessions end)")
    c.add_argument("name")
    c.set_defaults(func=_passwd)

    c = commands.add_parser("remove", help="remove an account; its generations stay, seen by admins")
    c.add_argument("name")
    c.set_defaults(func=_remove)

    c = commands.add_parser("token", help="make a new API token for an account (printed once), or --revoke it")
    c.add_argument("name")
    c.add_argument("--revoke", action="store_true", help="remove the account's token")
    c.set_defaults(func=_token)


def read_password(confirm: bool = True) -> str:
    """From the terminal, asked (twice with ``confirm``); else the first line of standard input."""
    if sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if confirm and getpass.getpass("again: ") != password:
            raise InputError("the two passwords differ")
    else:
        password = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    if not password:
        raise InputError("no password given (type it when asked, or pipe it on standard input)")
    return password


def _add(args: argparse.Namespace) -> int:
    from storage import users

    users.check_name(args.name)
    password = None if args.no_password else users.check_password(read_password())
    user = users.add(args.name, password, admin=args.admin, db=database())
    print(f"added {'admin' if user.admin else 'user'} {user.name}"
          + (" (signs in through the OIDC provider)" if password is None else ""))
    return 0


def _list(args: argparse.Namespace) -> int:
    from storage import users

    rows = users.list_users(db=database())
    if not rows:
        print("no accounts: the app runs for one local user on 127.0.0.1 without signing in", file=sys.stderr)
        return 0
    print(f"{'NAME':30}  {'ROLE':5}  {'SIGNS IN WITH':13}  {'API TOKEN':16}  GENERATIONS")
    for user, owned in rows:
        token = f"since {user.token_created_at:%Y-%m-%d}" if user.has_token else "-"
        print(f"{user.name:30}  {'admin' if user.admin else 'user':5}  {'password' if user.has_password else 'OIDC':13}  "
              f"{token:16}  {owned}")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    from storage import users

    db = database()
    users.get(args.name, db=db)  # an unknown name fails before the password is asked
    users.set_password(args.name, users.check_password(read_password()), db=db)
    print(f"password of {args.name} changed; its open sessions end")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from storage import users

    owned = users.remove(args.name, db=database())
    print(f"removed {args.name}; its {owned} generation(s) stay, owned by nobody (admins see them)")
    return 0


def _token(args: argparse.Namespace) -> int:
    from storage import users

    db = database()
    if args.revoke:
        had = users.revoke_token(args.name, db=db)
        print(f"{args.name}: token revoked" if had else f"{args.name} had no token")
        return 0
    print(users.create_token(args.name, db=db))
    print(f"the API token of {args.name}: shown only now (Backdrop keeps only its hash); it replaces any "
          "earlier one", file=sys.stderr)
    return 0
