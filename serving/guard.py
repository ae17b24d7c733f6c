"""ASGI middleware in front of `POST /predict`: the cheap refusals before any work, and the live OpenAPI document.

In order: the token (before a byte of the body is read), the media type, the declared size, then the body read
chunk by chunk under a byte limit and a deadline, so an anonymous, oversized or slow client costs a worker
nothing but the refusal. BentoML 1.4 reads any body whole and ignores its own `max_request_size`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException

from serving.errors import ApiError
from serving.model import ServedModel
from serving.openapi import document

Scope = dict[str, Any]


class ClientGone(Exception):
    """The client disconnected before its body arrived: nobody is left to answer."""


class RequestGuard:
    def __init__(self, app: Any, token: str | None, max_body_bytes: int, read_seconds: float) -> None:
        self.app, self.token = app, (token or "").encode()
        self.max_body_bytes, self.read_seconds = max_body_bytes, read_seconds

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == "/docs.json" and scope["method"] == "GET":
            return await self._docs(scope, receive, send)
        if scope["path"] != "/predict":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            if scope["method"] != "POST":
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "predict takes POST", "method")
            self._authorize(headers)
            self._check_media_type(headers)
            body = await self._read(receive, headers)
        except ClientGone:
            return None
        except ApiError as error:
            error.log(f"{scope['method']} {scope['path']}")
            return await respond(send, error)
        await self.app(scope, _replay(body, receive), send)

    def _authorize(self, headers: dict[bytes, bytes]) -> None:
        if not self.token:
            return
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        # Constant time, so the answer's timing says nothing about how much of a guess was right.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self.token):
            raise ApiError(
                HTTPStatus.UNAUTHORIZED, "send the service's token as `Authorization: Bearer <token>`", "Authorization"
            )

    def _check_media_type(self, headers: dict[bytes, bytes]) -> None:
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"application/json" and not media_type.endswith(b"+json"):
            shown = media_type.decode(errors="replace") or "none"
            raise ApiError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"the body must be JSON sent as `Content-Type: application/json` (got {shown})",
                "Content-Type",
            )

    async def _read(self, receive: Any, headers: dict[bytes, bytes]) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(int(declared))
        chunks, size, more = [], 0, True
        try:
            async with asyncio.timeout(self.read_seconds):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise self._too_large(size, at_least=True)
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            raise ApiError(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the body did not arrive within {self.read_seconds:g} s; send it at once",
                "body",
            ) from None
        return b"".join(chunks)

    def _too_large(self, size: int, at_least: bool = False) -> ApiError:
        return ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the body is {'over ' if at_least else ''}{size} bytes, more than the limit of {self.max_body_bytes} "
            "(NEXUS_SERVING_MAX_BODY_BYTES); split the batch",
            "body",
        )

    async def _docs(self, scope: Scope, receive: Any, send: Any) -> None:
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        if started.get("status") != HTTPStatus.OK:
            error = ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "the OpenAPI document could not be generated")
            error.log("GET /docs.json")
            return await respond(send, error)
        spec = document(json.loads(b"".join(chunks)), _served(), bool(self.token))
        await _send(send, HTTPStatus.OK, json.dumps(spec).encode(), {"content-type": "application/json"})


def _served() -> ServedModel | None:
    try:
        return bentoml.get_current_service().model
    except BentoMLException:  # the service is not instantiated yet
        return None


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the app the body already read, then the client's later messages (a disconnect)."""
    pending = True

    async def replayed() -> dict[str, Any]:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def respond(send: Any, error: ApiError) -> None:
    await _send(send, error.status, error.body(), error.headers())


async def _send(send: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode(), v.encode()) for k, v in {**headers, "content-length": str(len(body))}.items()]
    await send({"type": "http.response.start", "status": int(status), "headers": raw})
    await send({"type": "http.response.body", "body": body})
