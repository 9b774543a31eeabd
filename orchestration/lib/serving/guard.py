"""Who may write to the scoring service, and what a write may look like: a bearer token on every
write (RFC 6750), JSON bodies only, of bounded size. ASGI middlewares, testable without BentoML.

The token is the home's: ``BLUEPRINT_SERVING_TOKEN`` when set, else the file
``BLUEPRINT_HOME/secrets/serving.token`` (mode 600), created by ``blueprint serve`` before any
worker starts (exclusive create: two starts never mint two tokens). Clients of this project
(the replay, the closed loops, the tests, the benchmarks) read it with :func:`auth_headers`.
Reads (``GET``: ``/livez``, ``/readyz``, the OpenAPI page) stay open. Turning the check off
takes ``BLUEPRINT_SERVING_AUTH=off``, and the service logs a warning when it starts so.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration.lib.core.atomic import create_secret_once

if TYPE_CHECKING:
    from orchestration.settings import Settings

TOKEN_ENV = "BLUEPRINT_SERVING_TOKEN"
AUTH_ENV = "BLUEPRINT_SERVING_AUTH"
OPEN_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON = "application/json"
MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest body a write may have: a batch of the largest allowed size fits many times."""

log = logging.getLogger(__name__)


class NoTokenError(RuntimeError):
    """The service was started without a token while authentication is on."""


def token_path(settings: Settings) -> Path:
    return settings.secrets_dir / "serving.token"


def auth_enabled(environ: os._Environ | dict | None = None) -> bool:
    value = (environ or os.environ).get(AUTH_ENV, "on").strip().lower()
    if value not in {"on", "off"}:
        raise ValueError(f"{AUTH_ENV} must be on or off, not {value!r}")
    return value == "on"


def ensure_serving_token(settings: Settings) -> None:
    """Create the home's token file unless the environment gives the token or it exists."""
    if not os.environ.get(TOKEN_ENV):
        create_secret_once(token_path(settings), secrets.token_urlsafe(32))


def serving_token(settings: Settings) -> str | None:
    """The token writes must carry: the environment's, else the home's file, else None."""
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env
    try:
        return token_path(settings).read_text().strip() or None
    except FileNotFoundError:
        return None


def auth_headers(settings: Settings) -> dict[str, str]:
    """The headers a client of this home's service sends with a write."""
    token = serving_token(settings)
    return {"Authorization": f"Bearer {token}"} if token else {}


class Credentials:
    """The running service's token, set when the instance starts (the middlewares are built at
    import, before it: a Bento is built without any token)."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.required = True

    def load(self, settings: Settings) -> None:
        """The home's token; raises `NoTokenError` when authentication is on and there is none."""
        self.required = auth_enabled()
        if not self.required:
            log.warning("%s=off: the scoring service accepts writes from anyone who can reach "
                        "it", AUTH_ENV)
            return
        self.token = serving_token(settings)
        if self.token is None:
            raise NoTokenError(
                f"no serving token: start the service with `blueprint serve` (which creates "
                f"{token_path(settings)}), or set {TOKEN_ENV}; {AUTH_ENV}=off turns the check off"
            )


async def _refuse(send: Send, status: int, message: str, headers: dict[str, str] = {}) -> None:  # noqa: B006
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_write(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] not in OPEN_METHODS


class BearerAuth:
    """Refuses a write without the service's bearer token: 401 with ``WWW-Authenticate``."""

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app, self.credentials = app, credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _is_write(scope) and self.credentials.required:
            given = _header(scope, b"authorization") or ""
            scheme, _, token = given.partition(" ")
            expected = self.credentials.token
            if expected is None or scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), expected.encode()
            ):
                await _refuse(
                    send, 401, "a write needs the header Authorization: Bearer <token> (the "
                    "token is BLUEPRINT_HOME/secrets/serving.token or BLUEPRINT_SERVING_TOKEN)",
                    {"WWW-Authenticate": 'Bearer realm="blueprint"'},
                )
                return
        await self.app(scope, receive, send)


class JsonBodies:
    """Refuses a write whose body is not JSON (415: a ``text/plain`` post from any web page, a
    "simple" cross-origin request, never reaches the scorer) or is larger than ``max_bytes``
    (413, before it is read when its length is declared, as soon as it exceeds otherwise)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_write(scope):
            await self.app(scope, receive, send)
            return
        media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if media != JSON:
            await _refuse(send, 415, f"send the body as {JSON} (Content-Type: {JSON})")
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await _refuse(send, 413, f"the body is over {self.max_bytes} bytes")
                return
            await self.app(scope, receive, send)
            return
        body = await self._read_bounded(receive)  # no declared length: read it, up to the limit
        if body is None:
            await _refuse(send, 413, f"the body is over {self.max_bytes} bytes")
            return
        await self.app(scope, _replay(body), send)

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits as a connection would."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
