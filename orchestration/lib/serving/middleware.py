"""The ASGI middlewares of the scoring service: what sees a request before BentoML's routes.

:func:`service_middlewares` lists them, outermost first, and the service installs them in that
order (``add_asgi_middleware``): :class:`ReadinessEndpoint` answers ``GET /readyz`` with a
JSON body saying why (BentoML's own route says only 503); the guard of writes
(:mod:`orchestration.lib.serving.guard`: the bearer token, JSON bodies of bounded size) comes
next. A middleware that must see every request before its API (admission control) is one more
entry of that list. They are plain ASGI classes: testable without BentoML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestration.lib.serving.guard import MAX_BODY_BYTES, BearerAuth, Credentials, JsonBodies

READYZ = "/readyz"

ReadinessCheck = Callable[[], tuple[bool, dict[str, Any]]]
"""Whether the service is ready, and the JSON body that says with what or why not."""
Middleware = tuple[type, dict[str, Any]]
"""An ASGI middleware class and its options (the keyword arguments it is built with)."""


def _starting() -> tuple[bool, dict[str, Any]]:
    return False, {"ready": False, "reason": "the service is starting"}


class Readiness:
    """The running instance's readiness check, for :class:`ReadinessEndpoint`.

    The middlewares are built before BentoML makes the service instance: the instance sets
    ``check`` when it starts; until then the service is "starting".
    """

    def __init__(self) -> None:
        self.check: ReadinessCheck = _starting


class ReadinessEndpoint:
    """Answers ``GET /readyz``: 200 or 503, with the readiness check's JSON body."""

    def __init__(self, app: ASGIApp, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == READYZ:
            ready, body = self.readiness.check()
            await JSONResponse(body, status_code=200 if ready else 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def service_middlewares(readiness: Readiness, credentials: Credentials) -> list[Middleware]:
    """The ASGI middlewares the scoring service installs, outermost first: ``/readyz``, then
    the guard of writes (the bearer token, then JSON bodies of bounded size)."""
    return [
        (ReadinessEndpoint, {"readiness": readiness}),
        (BearerAuth, {"credentials": credentials}),
        (JsonBodies, {"max_bytes": MAX_BODY_BYTES}),
    ]
