"""Serve an atlas directory over HTTP on 127.0.0.1 only (the viewer also works from ``file://``)."""

from __future__ import annotations

import errno
import functools
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


class PortUnavailableError(OSError):
    """The port cannot be bound (in use, or privileged); the message names it and ``--port``."""


def make_server(directory: str | os.PathLike, port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server for ``directory`` bound to 127.0.0.1:``port`` (0: any free port); not started."""
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(
            f"{directory} has no index.html: build an atlas there first (circuits-vision atlas --out {directory})"
        )
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    try:
        return ThreadingHTTPServer((HOST, int(port)), handler)
    except OSError as error:
        if error.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        why = "is in use by another program" if error.errno == errno.EADDRINUSE else "needs administrator rights"
        problem = PortUnavailableError(
            f"port {port} on {HOST} {why}: pass another one with --port "
            f"(e.g. --port {int(port) + 1 if int(port) < 65535 else 8000}, or --port 0 for any free port)"
        )
        problem.errno = error.errno
        raise problem from None


def serve(directory: str | os.PathLike, port: int = 8000) -> None:
    """Serve ``directory`` until interrupted, printing its address."""
    server = make_server(directory, port)
    host, bound = server.server_address[:2]
    print(f"serving {directory} at http://{host}:{bound}/index.html (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
