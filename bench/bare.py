"""``python -m bench.bare PORT PLAIN GZIP``: the cheapest aiohttp server of the same bytes.

The load scenario's reference: one handler returning a body read from disk at start (the
gzip one when the request accepts gzip), with the exporter's content type. Whatever the
exporter spends beyond this per scrape is its own work; the rest is aiohttp and HTTP.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def main(port: int, plain: bytes, gzipped: bytes) -> None:
    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzipped, headers={
                "Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"})  # fmt: skip
        return web.Response(body=plain, headers={"Content-Type": CONTENT_TYPE})

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="Ready.\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/ready", ready)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes())
