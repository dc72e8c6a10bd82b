"""Serving Samosval on gevent's event loop: ``python app.py`` (gevent's WSGI
server) and the production command (gunicorn's gevent worker, gunicorn.conf.py).

An open live-log stream or a slow client costs a greenlet and a socket, not a
thread. Limits that keep one client from holding the server:

- ``SAMOSVAL_HEADER_TIMEOUT`` (10 s): a request line and headers must arrive
  within it, or the connection is closed (408 once the request line is in); an
  idle keep-alive connection waits for its next request no longer than that.
  gunicorn applies its ``keepalive`` setting the same way, and gunicorn.conf.py
  sets it to this value.
- the same deadline for a request body (:class:`BodyDeadline`): the whole body
  must arrive within it, or the answer is 408 and the connection closes. Under
  ``python app.py`` no single read or write of a request may stall longer either
  (a client that stops reading its live stream is dropped).
- ``SAMOSVAL_WORKER_CONNECTIONS``: connections held at once (streams, pages,
  keep-alives). Keep it above ``SAMOSVAL_SSE_MAX_STREAMS`` so that pages are
  served when every stream slot is taken.
- With several processes (``SAMOSVAL_REDIS_URL``), ``SAMOSVAL_SSE_MAX_STREAMS`` stays a
  cap per process, because what it protects (sockets, greenlets, memory) is per
  process, as ``SAMOSVAL_WORKER_CONNECTIONS`` is; the per-user cap counts a user's
  streams on every process; ``SAMOSVAL_SSE_MAX_STREAMS_CLUSTER`` (unset by default)
  caps the whole cluster. Slots are leased in Redis, so a killed process's slots
  free themselves within 30 s (``simulator/redis_state.py``).

This module imports gevent only inside the functions that serve: the app itself
(and its tests under Flask's test client) does not need it.
"""

from __future__ import annotations

import gc
import io
import os
import resource
import socket

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_WORKER_CONNECTIONS = 11000  # SSE_MAX_STREAMS (10,000) plus room for pages
FD_LIMIT = 20000


def header_timeout() -> float:
    return float(os.environ.get("SAMOSVAL_HEADER_TIMEOUT") or DEFAULT_HEADER_TIMEOUT)


def worker_connections() -> int:
    return int(os.environ.get("SAMOSVAL_WORKER_CONNECTIONS") or DEFAULT_WORKER_CONNECTIONS)


def raise_fd_limit(wanted: int = FD_LIMIT) -> int:
    """Every connection is a file descriptor: lift the soft limit towards ``wanted``
    (never above the hard limit). Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing thousands of streams.

    Every live stream keeps a few dozen long-lived objects (greenlet, generator,
    socket, handler); a full collection walks them all, and at 5,000 streams plus
    the app it stopped the loop for ~200 ms, several times a minute (seen as the
    p99 of the fan-out). The objects made while starting (modules, the app, its
    templates) are moved out of the collector's sight, and collections run after
    50,000 allocations instead of 700, so full ones become rare.

    ``app.py`` turns the collector off before its first import (Python's advice for
    ``gc.freeze``): start-up makes ~110,000 objects that live as long as the server,
    and collecting while importing cost 40–50 ms of every start, a full collection
    here 40–60 ms more for ~3,000 garbage objects, now frozen with the rest."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    gc.enable()


class BodyDeadline:
    """WSGI middleware: read the request body whole within ``timeout`` seconds before
    the app sees it, so a client sending a byte now and then cannot hold a request
    open. Bodies above ``max_bytes`` are left to the app (Flask answers 413 from
    ``Content-Length`` without reading)."""

    RESPONSE_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]

    def __init__(self, app, timeout: float, max_bytes: int):
        self.app = app
        self.timeout = timeout
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        import gevent

        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if (length <= 0 and not chunked) or length > self.max_bytes:
            return self.app(environ, start_response)
        stream = environ["wsgi.input"]
        try:
            with gevent.Timeout(self.timeout):
                body = _read_body(stream, length if not chunked else None, self.max_bytes)
        except gevent.Timeout:
            start_response("408 Request Timeout", list(self.RESPONSE_HEADERS))
            return [b"Request body not received in time.\n"]
        if body is None:
            start_response("413 Request Entity Too Large", list(self.RESPONSE_HEADERS))
            return [b"Request body too large.\n"]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)


def _read_body(stream, length: int | None, max_bytes: int) -> bytes | None:
    """``length`` bytes (or, chunked, everything up to ``max_bytes``; None beyond)."""
    parts, got = [], 0
    wanted = length if length is not None else max_bytes + 1
    while got < wanted:
        part = stream.read(min(65536, wanted - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    if length is None and got > max_bytes:
        return None
    return b"".join(parts)


def make_server(app, host: str, port: int):
    """gevent's WSGI server for ``python app.py``, with the limits above."""
    from gevent import Timeout
    from gevent.pool import Pool
    from gevent.pywsgi import WSGIHandler, WSGIServer

    class HeadersTimeout(OSError):
        """Raised in a connection's greenlet when its request headers are late."""

    class Handler(WSGIHandler):
        timeout = header_timeout()
        _deadline = None

        def handle(self):
            try:  # a live stream wants each event out at once (no Nagle delay)
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
            super().handle()

        def read_requestline(self):
            # Bounds the wait for a request on a fresh or idle keep-alive connection
            # and the headers that follow; cancelled once they are in.
            self._deadline = Timeout.start_new(self.timeout, HeadersTimeout("headers too slow"))
            return super().read_requestline()

        def read_request(self, raw_requestline):
            try:
                return super().read_request(raw_requestline)
            finally:
                self._cancel_deadline()
                # From here on no single read or write may stall longer either: a body
                # that stops arriving (also while the server discards what the app did
                # not read) or a client that stops reading its stream.
                self.socket.settimeout(self.timeout)

        def handle_one_request(self):
            try:
                return super().handle_one_request()
            finally:
                self._cancel_deadline()

        def _cancel_deadline(self):
            if self._deadline is not None:
                self._deadline.close()
                self._deadline = None

        def _handle_client_error(self, ex):
            if isinstance(ex, HeadersTimeout):
                return (
                    "408",
                    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                )
            return super()._handle_client_error(ex)

    wrapped = BodyDeadline(app, header_timeout(), int(app.config["MAX_CONTENT_LENGTH"]))
    # log=None: Samosval writes its own access lines (with request ids).
    return WSGIServer(
        (host, port), wrapped, handler_class=Handler, log=None, spawn=Pool(worker_connections())
    )
