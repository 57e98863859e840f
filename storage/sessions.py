"""Sign-in sessions of the app: a browser tab signed in with a password comes back signed in
after a reload, until *Sign out*, the tab closes, or the account changes.

Signing in makes a random token (``bds_`` and 43 URL-safe characters, 256 bits) that only the
tab keeps (its ``sessionStorage``: never a cookie, never the address) and hands back on a
reload; the database keeps its SHA-256 (a random token needs no slow hash), the account, and
when it lapses: SESSION_IDLE after it was made or last brought back. A token is worth nothing
once its row is gone: *Sign out* deletes it, ``users passwd`` and ``users remove`` delete the
account's rows (storage.users), a lapsed one is deleted when met.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select

from storage.db import Database, get_database, utcnow
from storage.models import SignInSession, User as UserRow
from storage.users import by_id

PREFIX = "bds_"
SESSION_IDLE = timedelta(hours=24)


def _db(db: Database | None) -> Database:
    return db or get_database()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start(user, db: Database | None = None) -> str:
    """A new session for ``user`` (storage.users.User): its token, returned once."""
    token = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with _db(db).session() as session:
        session.execute(delete(SignInSession).where(SignInSession.expires_at < now))
        session.add(SignInSession(user_id=user.id, token_hash=_hash(token), created_at=now,
                                  expires_at=now + SESSION_IDLE))
    return token


def resume(token: str, db: Database | None = None):
    """The account whose live session ``token`` is (storage.users.User), its lapse pushed back;
    None for anything else: unknown, ended, lapsed, or started before the account's password
    changed."""
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 100:
        return None
    now, db = utcnow(), _db(db)
    with db.session() as session:
        found = session.execute(select(SignInSession, UserRow).join(UserRow, UserRow.id == SignInSession.user_id)
                                .where(SignInSession.token_hash == _hash(token))).first()
        if found is None:
            return None
        row, account = found
        if row.expires_at <= now or row.created_at < account.credentials_changed_at:
            session.delete(row)
            return None
        row.expires_at = now + SESSION_IDLE
        account_id = account.id
    return by_id(account_id, db=db)


def end(token: str | None, db: Database | None = None) -> None:
    """Sign out: the token brings nobody back any more."""
    if token:
        with _db(db).session() as session:
            session.execute(delete(SignInSession).where(SignInSession.token_hash == _hash(token)))
