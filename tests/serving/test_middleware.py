"""The scoring service's ASGI middlewares, without BentoML: stacked in front of a stand-in for
the service's routes, in the order the service installs them."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from orchestration.lib.core import atomic
from orchestration.lib.serving import guard
from orchestration.lib.serving.guard import Credentials, NoTokenError
from orchestration.lib.serving.middleware import Readiness, service_middlewares
from orchestration.settings import get_settings

TOKEN = "s3cret-token"
JSON_TYPE = [(b"content-type", b"application/json")]


async def routes(scope: Scope, receive: Receive, send: Send) -> None:
    body = await Request(scope, receive).body() if scope["method"] == "POST" else b""
    await PlainTextResponse(f"the service's route ({len(body)} bytes)")(scope, receive, send)


def credentials(token: str | None = TOKEN) -> Credentials:
    held = Credentials()
    held.token = token
    return held


def request(
    readiness: Readiness, method: str, path: str, headers: list | None = None,
    chunks: tuple[bytes, ...] = (b"",), held: Credentials | None = None,
) -> tuple[int, bytes]:
    """The status and body of one request through the middlewares (outermost first)."""
    app: Any = routes
    for middleware, options in reversed(service_middlewares(readiness, held or credentials())):
        app = middleware(app, **options)
    sent: list[dict[str, Any]] = []
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def authorized(token: str = TOKEN, body: bytes | None = None) -> list:
    headers = [(b"authorization", f"Bearer {token}".encode()), *JSON_TYPE]
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    return headers


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


def test_an_authorized_json_write_passes_through_to_the_service() -> None:
    status, body = request(Readiness(), "POST", "/score", authorized(body=b"{}"), (b"{}",))
    assert (status, body) == (200, b"the service's route (2 bytes)")


@pytest.mark.parametrize("headers", [
    JSON_TYPE,  # no token
    authorized("wrong"),
    [(b"authorization", TOKEN.encode()), *JSON_TYPE],  # no scheme
    [(b"authorization", f"Basic {TOKEN}".encode()), *JSON_TYPE],
])
def test_a_write_without_the_token_is_refused_401(headers) -> None:
    status, body = request(Readiness(), "POST", "/labels", headers)
    assert status == 401 and "Authorization: Bearer" in json.loads(body)["error"]


def test_a_service_without_a_token_refuses_every_write() -> None:
    assert request(Readiness(), "POST", "/score", authorized(), held=credentials(None))[0] == 401


def test_reads_stay_open() -> None:
    assert request(Readiness(), "GET", "/docs.json", [])[0] == 200


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/x-www-form-urlencoded",
                                          b"multipart/form-data", None])
def test_a_write_that_is_not_json_is_refused_415(content_type) -> None:
    headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
    if content_type:
        headers.append((b"content-type", content_type))
    status, body = request(Readiness(), "POST", "/score", headers, (b"{}",))
    assert status == 415 and "application/json" in json.loads(body)["error"]


def test_a_body_over_the_limit_is_refused_413_declared_or_not() -> None:
    big = b"x" * (guard.MAX_BODY_BYTES + 1)
    assert request(Readiness(), "POST", "/score", authorized(body=big), (b"",))[0] == 413
    chunks = (big[:1000], big[1000:])  # chunked: no declared length, counted while read
    assert request(Readiness(), "POST", "/score", authorized(), chunks)[0] == 413
    small = (b'{"a": ', b"1}")
    assert request(Readiness(), "POST", "/score", authorized(), small) == (
        200, b"the service's route (8 bytes)"
    )


def test_the_service_does_not_start_without_a_token(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BLUEPRINT_HOME", str(tmp_path))
    monkeypatch.delenv(guard.TOKEN_ENV, raising=False)
    settings = get_settings()
    with pytest.raises(NoTokenError, match="blueprint serve"):
        Credentials().load(settings)
    guard.ensure_serving_token(settings)
    loaded = Credentials()
    loaded.load(settings)
    assert loaded.token == guard.token_path(settings).read_text().strip()
    monkeypatch.setenv(guard.TOKEN_ENV, "from-the-environment")
    loaded.load(settings)
    assert loaded.token == "from-the-environment"
    monkeypatch.setenv(guard.AUTH_ENV, "off")
    monkeypatch.delenv(guard.TOKEN_ENV)
    off = Credentials()
    off.load(get_settings())
    assert not off.required


def test_a_secret_is_never_readable_by_others_and_never_replaced(tmp_path, monkeypatch) -> None:
    """Issue 16: the key file was written, then chmod-ed: briefly world-readable."""
    target = tmp_path / "secrets" / "serving.token"
    seen_modes = []
    link = os.link

    def watching_link(source, destination):
        seen_modes.append(stat.S_IMODE(os.stat(source).st_mode))
        link(source, destination)

    monkeypatch.setattr(atomic.os, "link", watching_link)
    old_umask = os.umask(0)  # the most permissive: the mode must not come from the umask
    try:
        assert atomic.create_secret_once(target, "first")
        assert not atomic.create_secret_once(target, "second")
    finally:
        os.umask(old_umask)
    assert seen_modes == [0o600, 0o600]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["serving.token"]  # no temp file left


def test_the_service_never_mints_a_pseudonymization_key(tmp_path, monkeypatch) -> None:
    """Issue 16: a Bento served without the pipeline's home would mint a new key (its
    pseudonyms would match nothing) instead of saying what is missing."""
    from orchestration.settings import PSEUDONYMIZATION_KEY_ENV, NoKeyError, pseudonymization_key

    monkeypatch.setenv("BLUEPRINT_HOME", str(tmp_path))
    monkeypatch.delenv(PSEUDONYMIZATION_KEY_ENV, raising=False)
    settings = get_settings()
    with pytest.raises(NoKeyError, match="set BLUEPRINT_HOME"):
        pseudonymization_key(settings, create=False)
    assert not (settings.secrets_dir / "pseudonymization.key").exists()
    made = pseudonymization_key(settings)  # the pipeline makes it once
    assert pseudonymization_key(settings, create=False) == made
