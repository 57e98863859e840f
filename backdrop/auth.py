"""Who is calling the HTTP API: one dependency, ``current_user``, that every route asks, on the
app's rules (storage.access, read once when the API is made: ``app.state.access``):

- Without accounts, the API serves one local user who sees every generation (``None``, as for
  the command line), and only to clients on this machine: a request from any other address is
  refused (403), and ``backdrop serve`` refuses to listen beyond loopback (``access.refusal``,
  as ``backdrop app`` does).
- Once accounts exist (``backdrop users add``), or sign-in goes through an OIDC provider, every
  request carries an account's API token (``backdrop users token NAME``) as ``Authorization:
  Bearer TOKEN``, wherever the API listens; the account sees and changes only its own
  generations, an admin all of them (storage's ``user``). A missing or unknown token is 401.
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from storage import access, users

_bearer = HTTPBearer(auto_error=False, description="an account's API token: `backdrop users token NAME` makes one")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def current_user(request: Request,
                 credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> users.User | None:
    """The caller's account, or None for the local user of a Backdrop without accounts."""
    db = request.app.state.queue.db
    if credentials is not None:
        user = users.authenticate_token(credentials.credentials, db=db)
        if user is None:
            raise HTTPException(401, "this API token is not valid (revoked, replaced or mistyped): "
                                     "`backdrop users token NAME` makes a new one", headers=_CHALLENGE)
        return user
    if request.app.state.access.mode(db) != "local":
        raise HTTPException(401, "this Backdrop has accounts: send an account's API token as `Authorization: Bearer "
                                 "TOKEN` (`backdrop users token NAME` makes one)", headers=_CHALLENGE)
    client = request.client.host if request.client else None
    if not access.is_loopback(client):
        raise HTTPException(403, "this Backdrop has no accounts yet, so it answers only requests from this machine "
                                 f"(this one came from {client or 'an unknown address'}): add an account "
                                 "(`backdrop users add NAME --admin`) and use its API token")
    return None
