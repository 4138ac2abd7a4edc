"""App-wide HTTP behaviour: a bound on request bodies (413), and a JSON 500 for any error
no handler answered, instead of a plain-text one or a dropped connection.

Both sit inside CORS and compression, so their answers carry the CORS headers a browser
needs to read them and are compressed like every other answer.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("glacierflow.services")


def error_response(status_code: int, code: str, description: str) -> JSONResponse:
    """The API's error shape (STAC API's): {"code": ..., "description": ...}."""
    return JSONResponse({"code": code, "description": description}, status_code=status_code)


def _internal_error() -> JSONResponse:
    return error_response(
        500, "InternalServerError", "the server failed on this request; its log has the details"
    )


class _BodyTooLargeError(Exception):
    """Raised into the app when the body it reads passes the limit, so it stops reading."""


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413: before reading any of it when
    Content-Length says so, else (chunked uploads) as soon as what arrived passes it. The
    app never holds more than the limit, and a large upload does not occupy the loop."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _refusal(self) -> JSONResponse:
        refusal = error_response(
            413, "ContentTooLarge", f"the request body is larger than {self.limit} bytes"
        )
        refusal.headers["connection"] = "close"
        return refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refusal()(scope, receive, send)
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    if not started and not refused:
                        refused = True
                        await self._refusal()(scope, receive, send)
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # the app's own answer to the interrupted read comes too late
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLargeError:
            if not refused:  # the app had started answering: only a dropped connection is left
                raise


class JsonServerError:
    """Any exception the app lets through becomes a logged JSON 500 while the answer has
    not started (after that, dropping the connection is all that tells the client)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await _internal_error()(scope, receive, send)


async def _outer_server_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's outermost error handler (errors in the middleware around the app)."""
    return _internal_error()


def add_limits(app: FastAPI, max_body_bytes: int) -> None:
    """Install the body limit and the JSON 500s innermost, below CORS and compression;
    middleware added later goes outside them."""
    app.user_middleware.append(Middleware(JsonServerError))
    app.user_middleware.append(Middleware(BodyLimit, limit=max_body_bytes))
    app.add_exception_handler(Exception, _outer_server_error)
