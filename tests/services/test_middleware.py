"""App-wide behaviour of the composed app, served by uvicorn on loopback: request bodies
over the limit get a JSON 413 before they are read (declared or chunked, on every route),
and an error no handler answers is a JSON 500 without internals, whatever the encoding
and origin of the request, never a dropped connection or a plain-text page."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from conftest import serving
from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware

from glacierflow.services.app import create_app
from glacierflow.settings import Settings

LIMIT = 64 * 1024
ROUTES = ["/timeseries", "/stac/search", "/stac/collections", "/stac/collections/granules/items"]
CLIENTS = [{}, {"Accept-Encoding": "br"}, {"Accept-Encoding": "gzip"}, {"Origin": "http://x.org"}]


@pytest.fixture(scope="module")
def base(pgstac_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("limits"), max_body_bytes=LIMIT)
    with serving(create_app(settings, pgstac_dsn)) as url:
        yield url


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "code": "ContentTooLarge",
        "description": f"the request body is larger than {LIMIT} bytes",
    }


def test_the_default_limit_is_one_mebibyte() -> None:
    assert Settings().max_body_bytes == 1 << 20


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_declared_body_over_the_limit_is_refused_unread(
    base: str, path: str, content_type: str
) -> None:
    body = b'{"points": [' + b"[-48.8, 69.1], " * (LIMIT // 10) + b"[-48.8, 69.1]]}"
    response = httpx.post(f"{base}{path}", content=body, headers={"Content-Type": content_type})
    _assert_refused(response)


@pytest.mark.parametrize("path", ["/timeseries", "/stac/search"])
def test_a_chunked_body_is_refused_once_it_passes_the_limit(base: str, path: str) -> None:
    """No Content-Length: the upload is cut off soon after the limit, not read to its end
    (100 MB offered). (Routes that read no body answer without reading it, e.g. 405.)"""
    sent = 0

    def upload() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(100_000_000 // 8192):
            sent += 8192
            yield b" " * 8192

    response = httpx.post(
        f"{base}{path}", content=upload(), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert "content-length" not in response.request.headers
    _assert_refused(response)
    assert sent < 20 * LIMIT + 10_000_000  # the socket buffers, not the 100 MB


def test_a_100_mb_upload_is_refused_before_it_is_sent(base: str) -> None:
    """The answer comes from the headers alone: the client has sent none of the body."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /timeseries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer
    assert b"connection: close" in head.lower()
    assert json.loads(body)["code"] == "ContentTooLarge"


def test_bodies_within_the_limit_pass(base: str) -> None:
    body = {"limit": 1, "filter": {"op": "=", "args": [{"property": "id"}, "x" * (LIMIT // 2)]}}
    assert httpx.post(f"{base}/stac/search", json=body, timeout=30).status_code == 200
    assert httpx.post(f"{base}/stac/search", json={"limit": 1}, timeout=30).status_code == 200


def test_413_answers_carry_cors_headers(base: str) -> None:
    response = httpx.post(
        f"{base}/stac/search", content=b" " * (LIMIT + 1), headers={"Origin": "http://x.org"}
    )
    _assert_refused(response)
    assert response.headers["access-control-allow-origin"] == "*"


# -- unhandled errors --------------------------------------------------------------------------


class _Broken(BaseHTTPMiddleware):
    """Middleware that fails on /broken-middleware: an error outside the app's own stack."""

    async def dispatch(self, request: Request, call_next):
        if request.url.path == "/broken-middleware":
            raise RuntimeError("secret at /srv/glacierflow/data, postgresql://db:5432")
        return await call_next(request)


@pytest.fixture(scope="module")
def broken(pgstac_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The composed app with test-only routes and middleware that raise."""
    app: FastAPI = create_app(Settings(data_dir=tmp_path_factory.mktemp("broken")), pgstac_dsn)

    @app.get("/broken")
    async def fails() -> None:
        raise RuntimeError("secret at /srv/glacierflow/data, postgresql://db:5432")

    @app.post("/broken")
    def fails_in_a_thread(body: dict) -> None:
        raise KeyError("/srv/glacierflow/data")

    app.add_middleware(_Broken)
    with serving(app) as url:
        yield url


@pytest.mark.parametrize("headers", CLIENTS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unhandled_error_is_a_json_500_without_internals(
    broken: str, headers: dict[str, str], method: str
) -> None:
    response = httpx.request(method, f"{broken}/broken", headers=headers, json={"a": 1})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == "InternalServerError" and body["description"]
    assert "/srv" not in response.text and "5432" not in response.text
    if "Origin" in headers:
        assert response.headers["access-control-allow-origin"] == "*"
    # the server goes on answering
    assert httpx.get(f"{broken}/healthz", timeout=30).status_code == 200


@pytest.mark.parametrize("headers", CLIENTS)
def test_an_error_in_outer_middleware_is_a_json_500_too(
    broken: str, headers: dict[str, str]
) -> None:
    response = httpx.get(f"{broken}/broken-middleware", headers=headers)
    assert response.status_code == 500
    assert response.json()["code"] == "InternalServerError"
    assert "/srv" not in response.text and "5432" not in response.text
