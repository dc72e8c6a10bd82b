"""Both ways of serving (``python app.py`` on gevent's WSGI server, the production
command on gunicorn's gevent worker): slow or silent clients are cut off instead of
holding the server. The timeout is 1 s here (``SAMOSVAL_HEADER_TIMEOUT``) so the
tests are quick; no timing figure is asserted."""

from __future__ import annotations

import socket

import pytest

from tests.live import AppProcess


@pytest.fixture(params=["app.py", "gunicorn"])
def server(request, tmp_path):
    process = AppProcess(
        tmp_path / "instance",
        tmp_path / "server.log",
        speed=1.0,
        production=request.param == "gunicorn",
        extra_env={"SAMOSVAL_HEADER_TIMEOUT": "1"},
    )
    yield process
    process.stop()


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    return sock


def read_all(sock) -> bytes:
    """Everything the server sends until it closes the connection (the 20 s socket
    timeout fails the test if it never does)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_silent_connection_is_closed(server):
    with connect(server) as sock:
        assert read_all(sock) == b""


def test_a_request_whose_headers_never_finish_is_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then silence
        answer = read_all(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_an_idle_keep_alive_connection_is_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_all(sock)  # the answer, then the close once idle
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_request_body_that_never_finishes_gets_408(server):
    with connect(server) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\nusername=a"
        )  # 90 bytes never come
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408")


def test_pages_answer_while_slow_clients_wait(server):
    silent = [connect(server) for _ in range(50)]
    try:
        with connect(server) as sock:
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 200")
    finally:
        for sock in silent:
            sock.close()


def test_sigterm_ends_open_streams_and_the_server(server):
    """``python app.py`` and gunicorn alike: SIGTERM closes live streams, stops the
    engine and exits 0 (a stream would otherwise hold the process open)."""
    import signal

    from tests.live import login_cookie, read_events
    from tests.test_gunicorn import open_stream, seed_deployment

    deployment_id = seed_deployment(server)
    response = open_stream(server, login_cookie(server.url, "opsuser"), deployment_id)
    read_events(response, lambda found: any(e.get("event") == "status" for e in found))
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0, server.log_text()
    response.close()
    response.connection.close()
