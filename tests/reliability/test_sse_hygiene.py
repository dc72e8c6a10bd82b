"""SSE hygiene: a thousand live log streams opened and dropped leave nothing behind.

In process (Flask test client, ``buffered=False``): threads, the log stream's
subscriber count, the per-user open stream counters and traced Python memory
are back at their baseline. Against the real server (``python app.py`` on gevent;
raw sockets, half of them dropped with a TCP reset mid-stream): the server's
thread count, its open stream gauge and its resident memory come back too.
"""

from __future__ import annotations

import gc
import socket
import struct
import threading
import time
import tracemalloc

import pytest

from samosval.simulator.state import LOG_CAPACITY
from tests import factories
from tests.reliability import AppProcess, Client, add_users, prepare_database

CYCLES = 1000
WARM_UP = 50
# Traced memory drifts a little while bounded caches fill (the test client's cookie
# dates, ~20 KiB); a leak grows with every cycle instead. So the second half of
# the run must add next to nothing (one leaked 32-byte object per cycle would add
# 16 KiB there), and the whole run stays small.
SECOND_HALF_TOLERANCE = 12 * 1024
MEMORY_TOLERANCE = 64 * 1024


def _settle() -> None:
    for _ in range(3):
        gc.collect()


def test_it_leaves_threads_subscribers_counters_and_memory_at_baseline(app, auth, sample, users):
    app.config["SSE_HEARTBEAT_SECONDS"] = 30
    state = app.extensions["samosval"].state
    deployment_id = sample["deployment_id"]
    logs = state.runtime(deployment_id).logs
    # A full ring: lines appended during the run replace old ones instead of
    # growing the buffer, which would look like a leak.
    for n in range(LOG_CAPACITY):
        logs.append(1_800_000_000 + n, "INFO", f"line {n}")
    clients = [auth.client_for(name) for name in ("oleg", "dana", "carl", "colin")]
    url = f"/api/deployments/{deployment_id}/logs/stream"

    def cycle(n: int) -> None:
        client = clients[n % len(clients)]
        headers = {"Last-Event-ID": str(logs.last_seq - n % 50)} if n % 3 == 0 else {}
        response = client.get(url, headers=headers, buffered=False)
        assert response.status_code == 200
        chunks = iter(response.response)
        depth = n % 4  # 0: never read; 1: only the retry hint; 2-3: status and lines too
        received = ""
        for _ in range(depth):
            received += next(chunks).decode()
        if depth >= 2:
            assert "event: status" in received
        assert logs.subscribers == 1 and state.open_stream_count() == 1
        if n % 5 == 0:
            logs.append(1_800_001_000 + n, "INFO", "a line while connected")
        response.close()

    for n in range(WARM_UP):
        cycle(n)
    tracemalloc.start(1)  # one frame: deeper tracebacks make each cycle many times slower
    try:
        for n in range(LOG_CAPACITY):  # ring lines the tracer knows: replacing them nets zero
            logs.append(1_800_000_000 + n, "INFO", f"line {n}")
        for n in range(WARM_UP):
            cycle(n)
        _settle()
        threads_before = threading.active_count()
        memory_before, _peak = tracemalloc.get_traced_memory()
        snapshot_before = tracemalloc.take_snapshot()
        started = time.perf_counter()
        for n in range(CYCLES // 2):
            cycle(n)
        _settle()
        memory_half, _peak = tracemalloc.get_traced_memory()
        for n in range(CYCLES // 2, CYCLES):
            cycle(n)
        elapsed = time.perf_counter() - started
        _settle()
        memory_after, _peak = tracemalloc.get_traced_memory()
        growth = memory_after - memory_before
        second_half = memory_after - memory_half
        top = tracemalloc.take_snapshot().compare_to(snapshot_before, "lineno")[:8]
    finally:
        tracemalloc.stop()

    print(
        f"\nsse hygiene (in process): {CYCLES} cycles in {elapsed:.1f} s, threads "
        f"{threads_before}->{threading.active_count()}, subscribers {logs.subscribers}, "
        f"open streams {state.open_stream_count()}, traced memory {growth / 1024:+.1f} KiB "
        f"(second half {second_half / 1024:+.1f} KiB)"
    )
    assert threading.active_count() == threads_before
    assert logs.subscribers == 0
    assert state.open_stream_count() == 0
    assert second_half < SECOND_HALF_TOLERANCE, "\n".join(str(stat) for stat in top)
    assert growth < MEMORY_TOLERANCE, "\n".join(str(stat) for stat in top)


# --- against the real server -------------------------------------------------------


def _open_raw(port: int, path: str, cookie: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    )
    return sock


def _read_until(sock: socket.socket, marker: bytes, limit: float = 10.0) -> bytes:
    received = b""
    deadline = time.monotonic() + limit
    while marker not in received:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} in {received[:300]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed early: {received[:300]!r}")
        received += chunk
    return received


def _wait_back(read, target, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    value = read()
    while value > target and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


@pytest.mark.slow
def test_it_releases_server_threads_and_memory_after_dropped_connections(tmp_path, live_backend):
    instance = tmp_path / "instance"
    target = prepare_database(instance, live_backend)
    from samosval.db import connect

    db = connect(target)
    ids = add_users(db, [("oleg", "operator")])
    request_id = factories.make_request(db, owner_id=ids["oleg"], status="approved")
    image_id = factories.make_image(db, request_id=request_id)
    deployment_id = factories.make_deployment(db, image_id=image_id)
    db.close()
    # A client that closed (FIN) is noticed at the stream's next write or so; gevent
    # opens a stream in ~3 ms, so lift the per-user cap that a quick loop would meet.
    server = AppProcess(
        instance,
        tmp_path / "server.log",
        speed=20.0,
        extra_env={"SAMOSVAL_SSE_HEARTBEAT_SECONDS": "0.5", "SAMOSVAL_SSE_MAX_STREAMS_PER_USER": "1000"},
        backend=live_backend,
    )
    try:
        client = Client(server.port)
        client.login("oleg")
        cookie = client.cookie_header()
        client.close()
        path = f"/api/deployments/{deployment_id}/logs/stream"

        def cycle(n: int) -> None:
            sock = _open_raw(server.port, path, cookie)
            try:
                head = _read_until(sock, b"event: status")
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
                if n % 2:
                    # A vanished client (browser killed, network gone): RST, not FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            finally:
                sock.close()

        for n in range(100):
            cycle(n)
        assert _wait_back(lambda: server.metric("samosval_sse_open_streams"), 0) == 0
        threads_before = _wait_back(server.thread_count, 0, timeout=1)
        rss_before = server.rss_kb()
        started = time.perf_counter()
        peak_streams = 0.0
        for n in range(CYCLES):
            cycle(n)
            if n % 100 == 0:
                peak_streams = max(peak_streams, server.metric("samosval_sse_open_streams"))
        elapsed = time.perf_counter() - started
        streams_after = _wait_back(lambda: server.metric("samosval_sse_open_streams"), 0)
        threads_after = _wait_back(server.thread_count, threads_before)
        rss_after = server.rss_kb()
    finally:
        exit_code = server.stop()

    print(
        f"\nsse hygiene (live server): {CYCLES} connections dropped in {elapsed:.1f} s "
        f"(half with a TCP reset), open streams peak {peak_streams:g} -> {streams_after:g}, "
        f"server threads {threads_before}->{threads_after}, RSS {rss_before} -> {rss_after} KiB "
        f"({(rss_after - rss_before) / 1024:+.1f} MiB)"
    )
    assert streams_after == 0
    assert threads_after <= threads_before
    assert rss_after - rss_before < 8 * 1024, "server memory grew by more than 8 MiB"
    assert exit_code == 0
