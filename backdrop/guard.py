"""What every request to the HTTP API passes before any route runs: it names this server, it does
not come from a web page of another origin, and its body is no larger than the route takes.

Without accounts the API trusts the programs on this machine, and a browser is one of them: any
page it shows could send it requests. A ``fetch(..., {mode: "no-cors"})`` from another origin is
sent (only its answer is hidden from the page), and a page served under a name of its own that
resolves to 127.0.0.1 (DNS rebinding) would even read the answers. So (as Jupyter and Ollama do):

- ``Host`` must name this server: the address it listens on, ``localhost`` or a loopback literal,
  or a name given with ``backdrop serve --allow-host``. Listening on every interface (which needs
  accounts: every request then carries an account's token, which no page has) any name is
  taken. Otherwise: 400.
- A request a browser marks as sent by a page of another origin is refused (403) before it
  reads or changes anything: an ``Origin`` other than the API's own (``null`` included), or
  ``Sec-Fetch-Site`` other than ``same-origin`` or ``none`` (an address typed by the person).

Programs (curl, httpx, requests) send neither header and are served as before; so is the
``/docs`` page, which is the API's own origin.

Bodies: ``limit_for(method, path)`` bytes at most (the declared ``Content-Length`` is checked
first, a streamed body as it arrives): 413, before a route or the multipart parser spools it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from storage.access import is_loopback

WILDCARDS = ("", "0.0.0.0", "::", "[::]")
DEFAULT_PORTS = {"http": 80, "https": 443}
SAME_ORIGIN_FETCH = ("same-origin", "none")


def _split(netloc: str, scheme: str) -> tuple[str, int] | None:
    """(host name lowercased, port) of ``host[:port]``, the scheme's port when none is given;
    None when it is not a host."""
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return host.rstrip(".").lower(), port if port is not None else DEFAULT_PORTS.get(scheme, 80)


class BrowserGuard:
    """ASGI middleware: the Host allow-list and the cross-origin refusal (module docstring)."""

    def __init__(self, app, listen: str = "127.0.0.1", allowed_hosts: Iterable[str] = ()):
        self.app = app
        self.any_host = listen.strip() in WILDCARDS
        self.hosts = {name.strip("[]").rstrip(".").lower() for name in (listen, *allowed_hosts) if name.strip()}

    def host_allowed(self, host: str) -> bool:
        return self.any_host or host in self.hosts or is_loopback(host)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        scheme = scope.get("scheme", "http")
        host = _split(headers.get("host", ""), scheme)
        if host is None or not self.host_allowed(host[0]):
            shown = headers.get("host", "")
            return await _refuse(send, 400, f"this server does not answer to the name {shown!r} (Host): it answers "
                                            "to the address it listens on, localhost and 127.0.0.1 (a page under "
                                            "another name, e.g. through DNS rebinding, must not reach it); "
                                            "`backdrop serve --allow-host NAME` adds a name")
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin) if origin != "null" else None
            source = _split(parts.netloc, parts.scheme) if parts is not None and parts.scheme else None
            if source != host:
                return await _refuse(send, 403, f"refused: this request was sent by a web page of another origin "
                                                f"({origin}); the API answers programs (curl, scripts) and its own "
                                                "/docs page, never other sites")
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in SAME_ORIGIN_FETCH:
            return await _refuse(send, 403, f"refused: the browser marks this request as sent by another site "
                                            f"(Sec-Fetch-Site: {fetch_site}); the API answers programs (curl, "
                                            "scripts) and its own /docs page, never other sites")
        return await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: request bodies of at most ``limit_for(method, path)`` bytes, else 413."""

    def __init__(self, app, limit_for: Callable[[str, str], int]):
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _refuse(send, 413, _too_large(limit))
        received, refused, started = 0, False, False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a streamed body past the limit: answer now, stop the route reading it
                    if not refused and not started:
                        await _refuse(send, 413, _too_large(limit))
                    refused = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:  # the 413 was sent: whatever the route answers to the cut-off request is dropped
                return
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass


class _TooLarge(Exception):
    """Raised into the route reading a body past its limit (the 413 is already sent)."""


def _too_large(limit: int) -> str:
    shown = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit / 2**10:g} KB"
    return f"the request is larger than the limit of {shown} for this route"


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
