"""Who is calling the HTTP API: one dependency, ``current_user``, that every route asks.

Backdrop has no user accounts yet. Until it has, the API serves a single local user, an
administrator who sees every generation, and only to clients on this machine: a request from
any other address is refused (403), and ``backdrop serve`` refuses to listen on an address other
than loopback (``check_bind``). Once accounts with per-user API tokens exist, ``current_user``
checks the ``Authorization: Bearer TOKEN`` header against them and returns the token's user
(every route already receives the user it returns).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastapi import HTTPException, Request

from core.errors import InputError

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


LOCAL_USER = User("local", admin=True)  # the one user while there are no accounts


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str) -> None:
    """Refuse to serve beyond this machine while no one has to log in."""
    if not is_loopback(host):
        raise InputError(f"cannot serve the API on {host!r}: Backdrop has no user accounts yet, so anyone who can "
                         "reach that address could use and delete every generation. It serves this machine only: use "
                         "--host 127.0.0.1 (the default), and put a reverse proxy with its own login in front to reach "
                         "it from elsewhere")


def current_user(request: Request) -> User:
    """The caller: the local user, for a client on this machine; 403 for any other client."""
    client = request.client.host if request.client else None
    if not is_loopback(client):
        raise HTTPException(403, f"this Backdrop has no user accounts yet and answers only requests from this machine "
                                 f"(the client address is {client or 'unknown'})")
    return LOCAL_USER

