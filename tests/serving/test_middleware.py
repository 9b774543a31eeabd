"""The scoring service's ASGI middlewares, without BentoML: stacked in front of a stand-in for
the service's routes, in the order the service installs them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from orchestration.lib.serving.middleware import Readiness, service_middlewares


async def routes(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("the service's route")(scope, receive, send)


def request(readiness: Readiness, method: str, path: str) -> tuple[int, bytes]:
    """The status and body of one request through the middlewares (outermost first)."""
    app: Any = routes
    for middleware, options in reversed(service_middlewares(readiness)):
        app = middleware(app, **options)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def readyz(readiness: Readiness) -> tuple[int, dict[str, Any]]:
    status, body = request(readiness, "GET", "/readyz")
    return status, json.loads(body)


def test_readyz_answers_the_readiness_check_as_json_with_200_or_503() -> None:
    readiness = Readiness()
    assert readyz(readiness) == (503, {"ready": False, "reason": "the service is starting"})
    readiness.check = lambda: (True, {"ready": True, "model_version": "v7"})
    assert readyz(readiness) == (200, {"ready": True, "model_version": "v7"})
    readiness.check = lambda: (False, {"ready": False, "reason": "no champion model loaded yet"})
    assert readyz(readiness)[0] == 503


def test_other_routes_pass_through_to_the_service() -> None:
    assert request(Readiness(), "POST", "/score") == (200, b"the service's route")
