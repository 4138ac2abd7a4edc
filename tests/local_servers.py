"""Loopback stand-ins for the remote services scenes come from: a STAC API (item search
with paging, as Earth Search and the Planetary Computer answer it) and a static file
server with HTTP range requests (as S3 and Azure blob storage serve COGs).

Both are real HTTP servers on 127.0.0.1 that real clients (pystac-client, GDAL's
/vsicurl/) talk to; they record what they were asked.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shapely.geometry import box, shape

STAC_ITEMS = Path(__file__).parent / "stac_items"
ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
QUERY = "https://api.stacspec.org/v1.0.0/item-search#query"


def stac_item(name: str) -> dict[str, Any]:
    """A fixture item, e.g. "earth-search_sentinel-2-c1-l2a" (a fresh copy)."""
    return json.loads((STAC_ITEMS / f"{name}.json").read_text())


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _matches(item: dict[str, Any], search: dict[str, Any], query: bool) -> bool:
    collections = search.get("collections")
    if collections and item.get("collection") not in collections:
        return False
    if (bbox := search.get("bbox")) and not shape(item["geometry"]).intersects(box(*bbox)):
        return False
    if when := search.get("datetime"):
        start, _, end = when.partition("/") if "/" in when else (when, "", when)
        at = _when(item["properties"]["datetime"])
        if start not in ("", "..") and at < _when(start):
            return False
        if end not in ("", "..") and at > _when(end):
            return False
    if query:
        for name, condition in (search.get("query") or {}).items():
            value = item["properties"].get(name)
            if "lte" in condition and (value is None or value > condition["lte"]):
                return False
    return True


@contextmanager
def stac_api(
    items: list[dict[str, Any]],
    conformance: tuple[str, ...] = (ITEM_SEARCH,),
    answer: Callable[[str], tuple[int, str, bytes] | None] | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A STAC API serving `items` (landing page, conformance, collections, POST/GET
    /search with `collections`, `bbox`, `datetime`, `limit`, `query` where `conformance`
    declares it, paged by a `next` link); yields its URL and the searches it received.
    `answer(path)` -> (status, content type, body) replaces the answer to a request, or
    None to leave it be (garbage tests)."""
    searches: list[dict[str, Any]] = []
    query = QUERY in conformance

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, document: dict[str, Any]) -> None:
            self._send(200, "application/json", json.dumps(document).encode())

        def _base(self) -> str:
            return f"http://{self.headers['Host']}"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if answer and (replaced := answer(url.path)):
                self._send(*replaced)
            elif url.path in ("", "/"):
                base = self._base()
                self._json(
                    {
                        "type": "Catalog",
                        "stac_version": "1.0.0",
                        "id": "local",
                        "description": "a local STAC API",
                        "conformsTo": [
                            "https://api.stacspec.org/v1.0.0/core",
                            *conformance,
                        ],
                        "links": [
                            {"rel": "self", "href": f"{base}/", "type": "application/json"},
                            {"rel": "root", "href": f"{base}/", "type": "application/json"},
                            {"rel": "data", "href": f"{base}/collections"},
                            {
                                "rel": "search",
                                "href": f"{base}/search",
                                "method": "GET",
                                "type": "application/geo+json",
                            },
                            {
                                "rel": "search",
                                "href": f"{base}/search",
                                "method": "POST",
                                "type": "application/geo+json",
                            },
                        ],
                    }
                )
            elif url.path == "/conformance":
                self._json({"conformsTo": ["https://api.stacspec.org/v1.0.0/core", *conformance]})
            elif url.path == "/search":
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                search: dict[str, Any] = {}
                if "collections" in params:
                    search["collections"] = params["collections"].split(",")
                if "bbox" in params:
                    search["bbox"] = [float(v) for v in params["bbox"].split(",")]
                for key in ("datetime", "limit", "token"):
                    if key in params:
                        search[key] = params[key]
                if "query" in params:
                    search["query"] = json.loads(params["query"])
                self._search(search)
            else:
                self._send(404, "application/json", b'{"code": "NotFound"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if answer and (replaced := answer(urlsplit(self.path).path)):
                self._send(*replaced)
                return
            self._search(json.loads(body))

        def _search(self, search: dict[str, Any]) -> None:
            searches.append(search)
            found = [i for i in items if _matches(i, search, query)]
            limit = int(search.get("limit") or 10)
            start = int(search.get("token") or 0)
            page = found[start : start + limit]
            links = []
            if start + limit < len(found):
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self._base()}/search",
                        "method": "POST",
                        "body": {**search, "token": str(start + limit)},
                        "type": "application/geo+json",
                    }
                )
            self._send(
                200,
                "application/geo+json",
                json.dumps(
                    {"type": "FeatureCollection", "features": copy.deepcopy(page), "links": links}
                ).encode(),
            )

    with _serve(Handler) as url:
        yield url, searches


class _RangeFiles(BaseHTTPRequestHandler):
    """Files of `folder` with single byte-range requests, each request logged to `log`."""

    folder: Path
    log: Path

    def log_message(self, *args: object) -> None:
        pass

    def _file(self, wanted: str | None) -> Path | None:
        with self.log.open("a") as log:
            log.write(f"{self.command}\t{urlsplit(self.path).path}\t{wanted or ''}\n")
        path = (self.folder / urlsplit(self.path).path.lstrip("/")).resolve()
        return path if path.is_file() and self.folder.resolve() in path.parents else None

    def do_HEAD(self) -> None:
        path = self._file(None)
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        wanted = self.headers.get("Range")
        path = self._file(wanted)
        if path is None:
            self.send_error(404)
            return
        data = path.read_bytes()
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].split(",")[0].partition("-")
            start, end = int(first), min(int(last or len(data) - 1), len(data) - 1)
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            data = data[start : end + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data)


def _serve_files(folder: Path, log: Path, ports: multiprocessing.Queue) -> None:
    handler = type("Handler", (_RangeFiles,), {"folder": folder, "log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ports.put(server.server_address[1])
    server.serve_forever()


@dataclass
class FileServer:
    """A running file server: its URL and what it was asked."""

    url: str
    log: Path

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, path, Range header or "") of every request so far."""
        if not self.log.exists():
            return []
        return [tuple(line.split("\t")) for line in self.log.read_text().splitlines()]  # type: ignore[misc]


@contextmanager
def file_server(folder: Path) -> Iterator[FileServer]:
    """Files of `folder` over HTTP with byte-range requests (what GDAL's /vsicurl/ needs),
    as object stores serve COGs. It runs in a process of its own: GDAL holds the GIL while
    it waits for an answer, so a server thread of this process would never answer it."""
    log = folder.parent / f"{folder.name}.requests.log"
    ports: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.get_context("fork").Process(
        target=_serve_files, args=(folder, log, ports), daemon=True
    )
    process.start()
    try:
        yield FileServer(f"http://127.0.0.1:{ports.get(timeout=10)}", log)
    finally:
        process.terminate()
        process.join(5)
