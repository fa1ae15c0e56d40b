"""Run the service's ASGI app on a real socket in a background thread (tests, benchmarks).

The socket is bound before the server starts (port 0: the kernel picks a free one), so
the URL is known at once and no port can collide with another process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

__all__ = ["serve_in_thread"]


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``host`` and an ephemeral port; yields the base URL.
    ``config``: more ``uvicorn.Config`` options (TLS: :func:`meterhub.service.tls.server_tls_config`;
    then the URL is ``https``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    cfg = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", **config)
    server = uvicorn.Server(cfg)
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not t.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if config.get('ssl_certfile') else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()
