"""Accounts: who may use a Backdrop that is served to a network, and whose generations are whose.

Passwords are hashed with Argon2id (argon2-cffi's ``PasswordHasher``, its recommended
parameters); a hash made with weaker parameters is upgraded at the next sign-in. Each account
may hold one API token for programs (the HTTP API): ``bd_`` and 43 random URL-safe characters,
shown once when it is made and stored as its SHA-256 (a random 256-bit token needs no slow
hash, and a hash lookup finds its account at once).

``User`` is what the rest of Backdrop passes around as "who is asking": storage's functions
take ``user=None`` (nobody in particular: the command line and a local app without accounts,
which see everything) or a ``User``: an admin sees every generation, anyone else only their own.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.errors import BackdropError, InputError
from storage.db import Database, get_database, utcnow
from storage.models import Generation, User as UserRow

MIN_PASSWORD = 8
SIGN_IN_WINDOW = timedelta(minutes=15)  # failed sign-ins are counted over this long
FAILURES_PER_ACCOUNT = 5  # within the window, for one name: then that name is locked until the oldest ages out
FAILURES_PER_SERVER = 50  # within the window, for all names together: then every sign-in waits
TOKEN_PREFIX = "bd_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,253}$")  # a login name or the e-mail an OIDC provider gives
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so that costs the same time."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AccountError(BackdropError):
    """An account operation that cannot be done as asked (unknown name, taken name, last admin...)."""


class SignInRefused(AccountError):
    """Too many failed sign-ins, for the name or on the server: the message says until when."""


@dataclass(frozen=True)
class User:
    """Who is asking: an account's id, name and role (never its secrets)."""

    id: int
    name: str
    admin: bool
    credentials_changed_at: datetime
    has_password: bool = True
    has_token: bool = False
    token_created_at: datetime | None = None


def _db(db: Database | None) -> Database:
    return db or get_database()


def _view(row: UserRow) -> User:
    return User(row.id, row.name, row.admin, row.credentials_changed_at, row.password_hash is not None,
                row.token_hash is not None, row.token_created_at)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"account name {name!r} is not valid: 1 to 254 letters, digits and . _ @ + -, "
                         "starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password must have at least {MIN_PASSWORD} characters")
    if "\x00" in password:
        raise InputError("the password must not contain a NUL character")
    return password


def any_accounts(db: Database | None = None) -> bool:
    """Whether any account exists: then the app asks everyone to sign in."""
    with _db(db).Session() as session:
        return session.scalar(select(func.count(UserRow.id))) > 0


def add(name: str, password: str | None, admin: bool = False, db: Database | None = None) -> User:
    """A new account; ``password`` None makes one that signs in through the OIDC provider only."""
    check_name(name)
    hashed = _hasher.hash(check_password(password)) if password is not None else None
    now = utcnow()
    try:
        with _db(db).session() as session:
            row = UserRow(name=name, password_hash=hashed, admin=admin, credentials_changed_at=now, created_at=now)
            session.add(row)
            session.flush()
            return _view(row)
    except IntegrityError:
        raise AccountError(f"an account named {name!r} already exists") from None


def list_users(db: Database | None = None) -> list[tuple[User, int]]:
    """Every account with the number of generations it owns, by name."""
    with _db(db).Session() as session:
        counts = dict(session.execute(
            select(Generation.owner_id, func.count(Generation.id)).group_by(Generation.owner_id)).all())
        return [(_view(row), counts.get(row.id, 0)) for row in session.scalars(select(UserRow).order_by(UserRow.name))]


def get(name: str, db: Database | None = None) -> User:
    with _db(db).Session() as session:
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise AccountError(f"no account named {name!r} (`backdrop users list` shows them)")
        return _view(row)


def by_id(user_id: int, db: Database | None = None) -> User | None:
    with _db(db).Session() as session:
        row = session.get(UserRow, user_id)
        return _view(row) if row is not None else None


def set_password(name: str, password: str, db: Database | None = None) -> None:
    """A new password; sessions signed in before it end."""
    hashed = _hasher.hash(check_password(password))
    with _db(db).session() as session:
        row = _row(session, name)
        row.password_hash, row.credentials_changed_at = hashed, utcnow()


def remove(name: str, db: Database | None = None) -> int:
    """Delete an account (its token with it); its generations stay, owned by nobody (admins see
    them). The last admin cannot be removed while other accounts remain. Returns how many
    generations it owned."""
    with _db(db).session() as session:
        row = _row(session, name)
        if row.admin:
            admins = session.scalar(select(func.count(UserRow.id)).where(UserRow.admin.is_(True)))
            others = session.scalar(select(func.count(UserRow.id)).where(UserRow.id != row.id))
            if admins == 1 and others:
                raise AccountError(f"{name!r} is the last admin: make another account admin first "
                                   "(`backdrop users add NAME --admin`)")
        owned = session.scalar(select(func.count(Generation.id)).where(Generation.owner_id == row.id))
        session.delete(row)
        return owned


def authenticate(name: str, password: str, db: Database | None = None) -> User | None:
    """The account when ``password`` is its password, else None (the same time either way)."""
    db = _db(db)
    with db.Session() as session:
        row = session.scalar(select(UserRow).where(UserRow.name == name)) if _NAME.match(name or "") else None
        stored = row.password_hash if row is not None and row.password_hash else None
    try:
        _hasher.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        with db.session() as session:
            session.get(UserRow, row.id).password_hash = _hasher.hash(password)
    return _view(row)


class _FailureBudget:
    """The failed sign-ins of the last SIGN_IN_WINDOW in this process (the app is one process;
    a restart forgets them). An attempt takes its place before its password is checked and gives
    it back when it succeeds, so sessions guessing in parallel cannot pass the budget together."""

    def __init__(self):
        self._lock = threading.Lock()
        self._failures: list[tuple[datetime, str]] = []

    def take(self, name: str, now: datetime) -> tuple[datetime, str]:
        with self._lock:
            self._failures = [(at, who) for at, who in self._failures if now - at < SIGN_IN_WINDOW]
            mine = [at for at, who in self._failures if who == name]
            if len(mine) >= FAILURES_PER_ACCOUNT:
                raise SignInRefused("Too many failed sign-ins for this name: it is locked until "
                                    f"{_until(mine[-FAILURES_PER_ACCOUNT], now)}. An admin can set a new password "
                                    "(`backdrop users passwd NAME`).")
            if len(self._failures) >= FAILURES_PER_SERVER:
                raise SignInRefused("Too many failed sign-ins on this server: sign-in is paused until "
                                    f"{_until(self._failures[-FAILURES_PER_SERVER][0], now)}.")
            entry = (now, name)
            self._failures.append(entry)
            return entry

    def give_back(self, entry: tuple[datetime, str]) -> None:
        with self._lock:
            if entry in self._failures:
                self._failures.remove(entry)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()


def _until(oldest: datetime, now: datetime) -> str:
    end = oldest + SIGN_IN_WINDOW
    return f"{end:%H:%M} UTC (in {max(1, math.ceil((end - now).total_seconds() / 60))} min)"


_failed_sign_ins = _FailureBudget()


def sign_in(name: str, password: str, db: Database | None = None, now: datetime | None = None) -> User | None:
    """``authenticate`` within the failure budget: SignInRefused, without checking the password,
    while the name (FAILURES_PER_ACCOUNT) or the server (FAILURES_PER_SERVER) has failed too
    often in the last SIGN_IN_WINDOW; the same for a name that is no account, which says nothing
    about which names exist."""
    entry = _failed_sign_ins.take(name, now or utcnow())
    user = authenticate(name, password, db=db)
    if user is not None:
        _failed_sign_ins.give_back(entry)
    return user


def forget_failed_sign_ins() -> None:
    """Start the budget afresh (tests; a restart of the app does the same)."""
    _failed_sign_ins.clear()


def create_token(name: str, db: Database | None = None) -> str:
    """A new API token for the account (replacing its old one), returned once: only its hash is kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with _db(db).session() as session:
        row = _row(session, name)
        row.token_hash, row.token_created_at = _token_hash(token), utcnow()
    return token


def revoke_token(name: str, db: Database | None = None) -> bool:
    """Remove the account's API token; False when it had none."""
    with _db(db).session() as session:
        row = _row(session, name)
        had = row.token_hash is not None
        row.token_hash, row.token_created_at = None, None
        return had


def authenticate_token(token: str, db: Database | None = None) -> User | None:
    """The account an API token belongs to, or None."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    with _db(db).Session() as session:
        row = session.scalar(select(UserRow).where(UserRow.token_hash == _token_hash(token)))
        return _view(row) if row is not None else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _row(session, name: str) -> UserRow:
    row = session.scalar(select(UserRow).where(UserRow.name == name))
    if row is None:
        raise AccountError(f"no account named {name!r} (`backdrop users list` shows them)")
    return row
