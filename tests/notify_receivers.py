"""Real receivers on 127.0.0.1 for the notification tests: an HTTP server that can
fail the first N calls, answer 500 forever or hang, and an SMTP server (aiosmtpd).
Both are started by fixtures and stopped at teardown."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class HTTPReceiver:
    """Records every POST; ``fail_first`` answers 500 that many times; ``always_fail``
    answers 500 forever; ``hang_seconds`` holds each answer that long."""

    def __init__(self):
        self.calls: list[dict] = []
        self.fail_first = 0
        self.always_fail = False
        self.hang_seconds = 0.0
        self.secret: bytes | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    failing = receiver.always_fail or len(receiver.calls) <= receiver.fail_first
                if receiver.hang_seconds:
                    time.sleep(receiver.hang_seconds)
                status = 500 if failing else 200
                answer = json.dumps({"ok": not failing}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def signature_ok(self, call: dict, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), call["body"], hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, call["headers"].get("X-Samosval-Signature-256", ""))

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def http_receiver():
    receiver = HTTPReceiver().start()
    yield receiver
    receiver.stop()


class SMTPSink:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "data": envelope.content.decode("utf-8", "replace"),
            }
        )
        return "250 OK"


@pytest.fixture
def smtp_server():
    import socket

    from aiosmtpd.controller import Controller

    sink = SMTPSink()
    with socket.socket() as probe:  # a free port (the controller checks it can connect)
        probe.bind(("127.0.0.1", 0))
        sink.port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()
