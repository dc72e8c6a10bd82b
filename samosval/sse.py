"""Server-Sent Events: a pure encoder and the live log stream of one deployment.

Every client of a deployment reads the same :class:`~samosval.simulator.state.LogStream`
(spec 4.7): no per-client copy of the buffer and no per-client timer. A client
sleeps in ``wait_change()`` until a line arrives, the status changes, the stream
closes, or it is woken because its user was blocked or signed out; otherwise it wakes once per
heartbeat to send a comment, which is also how a vanished client is noticed (the
write fails and the server closes the iterator).

Event ids are ``<epoch>-<seq>`` (the epoch names the server run, or with Redis the
stream's life there), so a client coming back after a restart is told ``reset``
instead of silently skipping the new run's first lines; a stream recreated while a
client watches (Redis lost its data) sends ``reset`` too. Line events are encoded once per deployment and shared by
its viewers (``LogStream.chunk_after``); the stream re-checks its viewer's access
at every heartbeat, status change and wake-up and ends with ``end`` and a reason.

The generator knows nothing about Flask: the route hands it plain values and two
callbacks, so it runs the same under gevent (``python app.py``, gunicorn's gevent
worker), in Flask's test client and in unit tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

INITIAL_TAIL = 200  # lines sent to a client that does not say where it stopped
BATCH = 500  # lines per write, so a client far behind still gets pings and status


def format_event(data=None, event: str | None = None, id=None, retry: int | None = None) -> str:
    """One SSE event as text. ``data`` that is not a string is sent as compact JSON;
    a multi-line string becomes several ``data:`` fields, as the format requires."""
    parts = []
    if event:
        _check_field(event)
        parts.append(f"event: {event}\n")
    if id is not None:
        _check_field(str(id))
        parts.append(f"id: {id}\n")
    if retry is not None:
        parts.append(f"retry: {int(retry)}\n")
    if data is not None:
        if not isinstance(data, str):
            data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            parts.append(f"data: {line}\n")
    return "".join(parts) + "\n"


def format_comment(text: str = "") -> str:
    """A comment line: ignored by EventSource, keeps proxies and the socket busy."""
    _check_field(text)
    return f": {text}\n\n"


def _check_field(value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError("SSE field values must not contain line breaks")


def parse_events(text: str) -> list[dict]:
    """Split SSE text into events (``{"event", "id", "data", "retry"}``; comments
    as ``{"comment": ...}``). For tests and the benchmark; follows the spec's rules
    for the fields this module writes."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip("\n"):
            continue
        event: dict = {}
        data_lines = []
        for line in block.split("\n"):
            if line.startswith(":"):
                event.setdefault("comment", line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data_lines.append(value)
            elif name in ("event", "id", "retry"):
                event[name] = value
        if data_lines:
            event["data"] = "\n".join(data_lines)
        events.append(event)
    return events


def line_payload(line) -> dict:
    return {"seq": line.seq, "ts": round(line.ts, 3), "level": line.level, "text": line.text}


def event_id(epoch: str, seq: int) -> str:
    """``<epoch>-<seq>``: sequence numbers start again in every server run, the epoch
    tells runs apart."""
    return f"{epoch}-{seq}" if epoch else str(seq)


def parse_after(header: str | None, query: str | None) -> tuple[str | None, int] | None:
    """Where the client stopped, as ``(epoch, seq)``; the epoch is None for a bare
    number (``?after=<seq>`` of the page just rendered). The ``Last-Event-ID`` header
    wins over ``?after=``: after an automatic reconnect the browser's header is newer
    than the URL it was opened with. Garbage counts as "not given"."""
    for raw in (header, query):
        if raw is None or raw.strip() == "":
            continue
        epoch, dash, number = raw.strip().rpartition("-")
        if dash and not epoch.isalnum():
            continue
        try:
            value = int(number)
        except ValueError:
            continue
        if value >= 0:
            return (epoch or None, value)
    return None


def encode_lines(lines, epoch: str) -> bytes:
    """The events of some log lines, ready to write: made once per deployment and
    range, shared by every viewer (``LogStream.chunk_after``)."""
    return "".join(format_event(line_payload(line), id=event_id(epoch, line.seq)) for line in lines).encode(
        "utf-8"
    )


def log_events(
    logs,
    *,
    after: tuple[str | None, int] | None,
    heartbeat: float,
    retry_ms: int | None,
    status_payload: Callable[[], dict | None],
    check_access: Callable[[], str | None],
    tail: int = INITIAL_TAIL,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[bytes]:
    """The events of one client, as byte chunks.

    ``status_payload()`` re-reads the deployment (status, flags, the actions this
    user may take) and returns None once it no longer exists. ``check_access()``
    returns None while the viewer may still watch, else the reason the stream ends
    (sent as ``end``); it runs at every heartbeat, every status change and every
    wake-up (a user was blocked or signed out).
    """
    yield (format_event(retry=retry_ms) if retry_ms else format_comment("stream")).encode()
    epoch = getattr(logs, "epoch", "")
    encode = lambda lines: encode_lines(lines, epoch)  # noqa: E731

    if after is not None:
        after_epoch, after_seq = after
        if (after_epoch is not None and after_epoch != epoch) or after_seq > logs.last_seq:
            # The client counted lines of another server run: start it afresh with
            # everything this run still holds.
            yield format_event({"reason": "restarted"}, event="reset").encode()
            after = (epoch, logs.last_seq - len(logs))
    if after is None:
        lines = logs.tail(tail)
        cursor = lines[0].seq - 1 if lines else logs.last_seq
    else:
        cursor = after[1]

    def end(reason: str) -> bytes:
        return format_event({"reason": reason}, event="end").encode()

    status_version = logs.status_version
    payload = status_payload()
    if payload is None:
        yield end("deleted")
        return
    yield format_event(payload, event="status").encode()
    last_write = clock()
    wakeups = logs.wakeups

    while True:
        if logs.epoch != epoch:
            # The stream was recreated under a new epoch (the shared store, Redis, lost
            # it): its lines are numbered afresh. Start the client over, as on reconnect.
            epoch = logs.epoch
            cursor = logs.last_seq - len(logs)
            yield format_event({"reason": "restarted"}, event="reset").encode()
            last_write = clock()
        if logs.wakeups != wakeups:
            wakeups = logs.wakeups
            if reason := check_access():
                yield end(reason)
                return
        data, sent_to, missed = (
            logs.chunk_after(cursor, BATCH, encode) if cursor < logs.last_seq else (b"", cursor, 0)
        )
        chunk = []
        if missed:
            chunk.append(format_event({"missed": missed, "after": cursor}, event="missed").encode())
        if data:
            chunk.append(data)
            cursor = sent_to
        if logs.status_version != status_version:
            status_version = logs.status_version
            payload = status_payload()
            if payload is None:
                yield b"".join(chunk) + end("deleted")
                return
            if reason := check_access():
                yield b"".join(chunk) + end(reason)
                return
            chunk.append(format_event(payload, event="status").encode())
        if chunk:
            yield b"".join(chunk) if len(chunk) > 1 else chunk[0]
            last_write = clock()
            continue  # drain before sleeping
        if logs.closed:
            if status_payload() is None:
                yield end("deleted")
            return  # server stopping: the browser reconnects with Last-Event-ID
        idle = clock() - last_write
        if idle >= heartbeat:
            if reason := check_access():
                yield end(reason)
                return
            yield b": ping\n\n"
            last_write = clock()
            continue
        logs.wait_change(cursor, status_version, wakeups, heartbeat - idle)


class EventStream:
    """The response body of one stream. ``close()`` (called by the WSGI server when
    the client leaves or the stream ends) stops the generator and runs ``release``
    exactly once, even if the body was never iterated."""

    def __init__(self, events: Iterator[str], release: Callable[[], None]):
        self._events = events
        self._release = release
        self._closed = False

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._events)
        return chunk.encode("utf-8") if isinstance(chunk, str) else chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._release()
