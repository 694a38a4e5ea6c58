"""Serve a built site on localhost (the site also works opened straight from its folder)."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from zoo.errors import CifarzooError


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise here
        pass


def make_server(site: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server for the folder `site` (port 0: any free port; see `server.server_address`)."""
    site = Path(site)
    if not (site / "index.html").is_file():
        raise CifarzooError(f"no built site in '{site}'; run `cifarzoo leaderboard build --out {site}` first.")
    handler = functools.partial(_QuietHandler, directory=str(site.resolve()))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        raise CifarzooError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port.") from None


def serve(server: ThreadingHTTPServer, seconds: float | None = None) -> None:
    """Serve until interrupted, or for `seconds` at most."""
    timer = threading.Timer(seconds, server.shutdown) if seconds else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        server.serve_forever()
    finally:
        if timer:
            timer.cancel()
        server.server_close()
