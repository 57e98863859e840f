"""Who may connect: the rules the app (its launcher `backdrop app` and its sign-in,
streamlit_app.py) and the HTTP API (`backdrop serve`, backdrop.auth) share.

- Served on a loopback address (127.0.0.1, the default) with no accounts and no OIDC provider:
  one local user, no sign-in (the app as it always was).
- Accounts exist (`backdrop users add`): everyone signs in with a password, wherever it is served.
- An OIDC provider is configured for Streamlit's ``st.login`` (an ``[auth]`` section in
  ``.streamlit/secrets.toml``): everyone signs in through it; an account of that name (the
  e-mail the provider gives) must exist, so the provider alone lets nobody in.
- Served to a network (any other address) with neither: refused, at start and in the app.

Whether an OIDC provider is configured is read from Streamlit's secrets files into a ``Policy``
once, when a server starts (the API keeps it; the app reads it on each run, as Streamlit reads
its secrets); whether accounts exist is asked of the database each time.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path

from storage import users

LOCAL_HOSTS = ("localhost",)


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (Streamlit's server.address) is reachable from this machine only. Unset
    means every interface: not loopback."""
    if not host:
        return False
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def oidc_configured(folder: Path | None = None) -> bool:
    """Whether Streamlit's secrets configure an OIDC provider for ``st.login``: an ``[auth]``
    section with ``redirect_uri``, ``cookie_secret`` and a provider (its ``client_id`` there, or a
    ``[auth.NAME]`` section), in the secrets files Streamlit reads by default (the user's
    ``~/.streamlit/secrets.toml``, then the project's ``.streamlit/secrets.toml``, which wins)."""
    section: dict = {}
    for path in (Path.home() / ".streamlit" / "secrets.toml", (folder or Path.cwd()) / ".streamlit" / "secrets.toml"):
        try:
            section.update(tomllib.loads(path.read_text(encoding="utf-8")).get("auth", {}))
        except (OSError, ValueError):  # missing or unreadable: configures nothing (Streamlit says why when used)
            continue
    if "redirect_uri" not in section or "cookie_secret" not in section:
        return False
    return "client_id" in section or any(isinstance(value, dict) for value in section.values())


@dataclass(frozen=True)
class Policy:
    """The rules, with ``oidc``: whether an OIDC provider is configured (``Policy.read()``
    reads the secrets files)."""

    oidc: bool

    @classmethod
    def read(cls, folder: Path | None = None) -> Policy:
        return cls(oidc_configured(folder))

    def mode(self, db=None) -> str:
        """``oidc``, ``password`` (accounts exist) or ``local`` (no sign-in)."""
        if self.oidc:
            return "oidc"
        return "password" if users.any_accounts(db=db) else "local"

    def refusal(self, host: str | None, db=None) -> str | None:
        """Why the app or the API must not serve on ``host``, or None when it may."""
        if is_loopback(host) or self.mode(db) != "local":
            return None
        shown = host or "every network interface"
        return (f"Backdrop will not serve {shown} without sign-in: anyone who can reach it could see, download and "
                "delete every generation. Add an account first (`backdrop users add NAME --admin`), configure an "
                "OIDC provider for st.login in .streamlit/secrets.toml, or serve on 127.0.0.1 (the default).")
