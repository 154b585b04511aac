"""One small HTTP server for ``/metrics`` (Prometheus text format), ``/healthz`` and ``/readyz``.

It replaces ``prometheus_client.start_http_server`` so that health and metrics share a port.
``/healthz`` answers 200 while :class:`~netwarden.service.health.Health` says live and 503
otherwise; ``/readyz`` does the same for ready.  Both bodies are the JSON of
:meth:`HealthReport.to_dict`.  The server runs in daemon threads and never touches the
pipeline: it only reads the registry and the health object.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .health import Health

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    health: Health | None
    clock: Callable[[], float]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        elif path in ("/healthz", "/readyz") and self.health is not None:
            report = self.health.report(self.clock())
            ok = report.live if path == "/healthz" else report.ready
            body = json.dumps(report.to_dict()).encode()
            self._send(200 if ok else 503, "application/json", body)
        elif path == "/":
            self._send(200, "text/plain; charset=utf-8", b"netwarden: /metrics /healthz /readyz\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)


class StatusServer:
    """The running server; :attr:`port` is the bound port (useful with ``port=0``)."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self._httpd = httpd
        self.host, self.port = httpd.server_address[:2]
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="netwarden-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()


def serve_status(
    registry: CollectorRegistry,
    health: Health | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 9108,
    clock: Callable[[], float] = time.time,
) -> StatusServer:
    """Start serving ``/metrics`` (and ``/healthz``, ``/readyz`` when ``health`` is given).

    Args:
        registry: the registry of :class:`~netwarden.metrics.Metrics`.
        health: the application's health object.
        host: address to bind; ``0.0.0.0`` or ``::`` to expose it beyond the host.
        port: TCP port; 0 picks a free one.
        clock: wall clock for the health report's ages.

    Raises:
        OSError: the address cannot be bound (the message names it).
    """
    handler = type(
        "Handler",
        (_Handler,),
        {"registry": registry, "health": health, "clock": staticmethod(clock)},
    )
    server_cls = type(
        "Server", (ThreadingHTTPServer,), {"address_family": _family(host), "daemon_threads": True}
    )
    try:
        httpd = server_cls((host, port), handler)
    except OSError as e:
        raise OSError(e.errno, f"cannot serve metrics on {host}:{port}: {e.strerror}") from e
    return StatusServer(httpd)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
