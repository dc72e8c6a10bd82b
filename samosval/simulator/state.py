"""In-memory runtime data of deployments: log streams and metric series.

One ``LogStream`` and one ``MetricSeries`` per deployment, shared by every
reader (spec 4.7: one stream for all clients). The engine appends; request
greenlets (or threads, under the test client) read. Each structure has its own
lock, held only for the few instructions that touch the deque, never across I/O.

Readers of one deployment sleep on shared ``threading.Event`` objects (gevent
events once ``app.py`` or gunicorn's gevent worker has monkey-patched): a change
sets them and puts fresh ones in their place, so a thousand viewers wake from
one notification. Readers are grouped in slices of ``WAKE_SLICE``, one event a
slice: under gevent the first slice wakes at once and each next one a loop turn
later (:func:`_wake_in_turns`), so new requests are accepted and answered between
slices instead of queueing behind 5,000 writes. The lines they send are encoded
once per deployment: the first reader to reach a range stores its bytes
(:meth:`LogStream.chunk_after`) and the others reuse them.
"""

from __future__ import annotations

import marshal
import secrets
import sys
import threading
import time
import zlib
from array import array
from collections import deque
from typing import NamedTuple

LOG_CAPACITY = 1000  # spec 5.3: the last 1000 lines per deployment
# Readers woken per loop turn under gevent. One line to a viewer costs ~40 µs
# (mostly the send itself), so a slice holds the loop for ~40-60 ms, and a request
# arriving meanwhile waits for one slice, not for every viewer of the deployment.
# Up to 1,000 viewers wake in one batch: each turn between slices adds to the
# spread of a line's receipt (measured: 250 a slice tripled it at 1,000 viewers).
WAKE_SLICE = 1000
METRIC_CAPACITY = 900  # spec 5.3: 15 minutes at one point a second


class LiveUnavailable(RuntimeError):
    """The shared live store (Redis, ``redis_state.py``) cannot be reached: answered
    503 with Retry-After (``security.py``). The in-memory state never raises it."""


class LogLine(NamedTuple):
    seq: int
    ts: float
    level: str
    text: str


class LogStream:
    """A ring of log lines with ever-growing sequence numbers.

    Readers ask for "everything after seq N" and learn how many lines they
    missed if those already fell off the ring. ``wait()`` sleeps until there
    is something new (a line, a status change, or the stream closing), so
    live readers never poll.

    Memory: a thousand lines as separate tuples cost ~265 KB per deployment.
    Lines are kept in blocks of ``BLOCK_LINES`` plain ``(ts, level, text)``
    tuples; once two newer blocks exist, a block is packed (marshal + zlib,
    ~8x smaller on log text). Sequence numbers are contiguous, so they are
    computed, not stored. Live readers stay within the two newest blocks and
    never unpack; a first read of 200 lines unpacks at most a few blocks.
    """

    BLOCK_LINES = 50
    # Encoded ranges kept for the other readers: live ones (a few lines at the head),
    # not a newcomer's catch-up read, which nobody else shares.
    CHUNK_CACHE = 16
    CHUNK_CACHE_LINES = 50
    CHUNK_CACHE_BYTES = 32 * 1024

    def __init__(self, capacity: int = LOG_CAPACITY, epoch: str = ""):
        self.capacity = capacity
        self.epoch = epoch  # names the server run: sequence numbers restart with it
        # Oldest first. Each block but the last is full; packed ones are bytes.
        self._blocks: deque[list | bytes] = deque()
        self._base_seq = 1  # seq of the first line of self._blocks[0]
        self._first_seq = 1  # oldest line still in the ring
        self._lock = threading.Lock()
        # One event per slice of waiting readers, made by the first reader to wait;
        # how many readers took the newest one.
        self._changed: list[threading.Event] | None = None
        self._last_slice_readers = 0
        self._chunks: dict[int, tuple[int, bytes]] = {}  # after seq -> (last seq, bytes)
        self._chunk_bytes = 0
        self.last_seq = 0
        self.status: str | None = None
        self.status_version = 0
        self.closed = False
        self.subscribers = 0
        self.wakeups = 0  # bumped by wake(): readers re-check outside conditions

    def _notify(self) -> None:
        """Wake every reader (the caller holds the lock). With nobody waiting (most
        deployments, most of the time) this costs one attribute check."""
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed[0].set()
            if len(changed) > 1:
                _wake_in_turns(changed[1:])

    def _change_event(self) -> threading.Event:
        """The event the next change sets for this reader: the newest slice's, or a
        fresh slice once ``WAKE_SLICE`` readers took that one. A reader that asks and
        then finds data without waiting still counts: slices only come out smaller."""
        with self._lock:
            changed = self._changed
            if changed is None or self._last_slice_readers >= WAKE_SLICE:
                if changed is None:
                    changed = self._changed = []
                changed.append(threading.Event())
                self._last_slice_readers = 0
            self._last_slice_readers += 1
            return changed[-1]

    def append(self, ts: float, level: str, text: str) -> int:
        with self._lock:
            self.last_seq += 1
            self._store(self.last_seq, ts, level, text)
            self._notify()
            return self.last_seq

    def _store(self, seq: int, ts: float, level: str, text: str) -> None:
        """Put line ``seq`` (the next one) into the ring: pack the block that just
        became the third newest, drop blocks that fell off (the caller holds the lock)."""
        blocks = self._blocks
        if not blocks or len(blocks[-1]) >= self.BLOCK_LINES:
            blocks.append([])
            if len(blocks) >= 3 and isinstance(blocks[-3], list):
                blocks[-3] = zlib.compress(marshal.dumps(blocks[-3]), 1)
        blocks[-1].append((ts, level, text))
        self._first_seq = max(self._first_seq, seq - self.capacity + 1)
        while len(blocks) > 1 and self._base_seq + self.BLOCK_LINES <= self._first_seq:
            blocks.popleft()
            self._base_seq += self.BLOCK_LINES

    def _lines(self, first: int, count: int) -> list[LogLine]:
        """``count`` lines from seq ``first`` on (the caller holds the lock and keeps
        the range inside the ring)."""
        lines: list[LogLine] = []
        seq, end = first, first + count
        while seq < end:
            index, offset = divmod(seq - self._base_seq, self.BLOCK_LINES)
            block = self._blocks[index]
            if isinstance(block, bytes):
                block = marshal.loads(zlib.decompress(block))
            stop = min(len(block), offset + end - seq)
            for ts, level, text in block[offset:stop]:
                lines.append(LogLine(seq, ts, level, text))
                seq += 1
        return lines

    def set_status(self, status: str) -> None:
        with self._lock:
            if status != self.status:
                self.status = status
                self.status_version += 1
                self._notify()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._notify()

    def read_after(self, seq: int, limit: int | None = None) -> tuple[list[LogLine], int]:
        """Lines with a sequence number above ``seq`` (oldest first) and how many
        lines after ``seq`` were lost because the ring overwrote them."""
        with self._lock:
            if self.last_seq < self._first_seq or seq >= self.last_seq:
                return [], 0
            first = self._first_seq
            missed = max(0, first - seq - 1)
            start = max(first, seq + 1)
            count = self.last_seq - start + 1
            if limit is not None:
                count = min(count, limit)
            return self._lines(start, count), missed

    def chunk_after(self, seq: int, limit: int, encode) -> tuple[bytes, int, int]:
        """Lines after ``seq`` encoded by ``encode(lines) -> bytes``: ``(data, last seq
        sent, missed)``. Readers at the same place share one encoding: the first one
        stores it and the rest reuse it, even if more lines arrived meanwhile (they
        come in the next chunk). ``encode`` must depend on the lines only."""
        hit = self._chunks.get(seq)  # one dict lookup: atomic, no lock needed
        if hit is not None:
            return hit[1], hit[0], 0
        lines, missed = self.read_after(seq, limit)
        if not lines:
            return b"", seq, missed
        data = encode(lines)
        last = lines[-1].seq
        if not missed and len(lines) <= self.CHUNK_CACHE_LINES:
            with self._lock:
                if seq not in self._chunks:
                    self._chunks[seq] = (last, data)
                    self._chunk_bytes += len(data)
                    while len(self._chunks) > self.CHUNK_CACHE or self._chunk_bytes > self.CHUNK_CACHE_BYTES:
                        oldest = next(iter(self._chunks))
                        self._chunk_bytes -= len(self._chunks.pop(oldest)[1])
        return data, last, missed

    def tail(self, count: int) -> list[LogLine]:
        with self._lock:
            count = min(count, len(self))
            return self._lines(self.last_seq - count + 1, count)

    def snapshot(self) -> list[LogLine]:
        with self._lock:
            return self._lines(self._first_seq, len(self))

    def wait(self, after_seq: int, status_version: int, timeout: float) -> bool:
        """Sleep until a line after ``after_seq`` exists, the status changed from
        ``status_version``, or the stream closed. Returns False on timeout."""
        return self.wait_change(after_seq, status_version, None, timeout)

    def wake(self) -> None:
        """Wake every reader without new data, so each re-checks conditions that live
        outside the stream (its user was blocked)."""
        with self._lock:
            self.wakeups += 1
            self._notify()

    def wait_change(self, after_seq: int, status_version: int, wakeups: int, timeout: float) -> bool:
        """Like :meth:`wait`, and also returns when :meth:`wake` was called since the
        reader saw ``wakeups`` (None: not counted)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            # The event first, then the check, no lock: a change after the check sets
            # this very event, so the wait below cannot miss it.
            changed = self._change_event()
            if (
                self.last_seq > after_seq
                or self.status_version != status_version
                or self.closed
                or (wakeups is not None and self.wakeups != wakeups)
            ):
                return True
            left = deadline - time.monotonic()
            if left <= 0 or not changed.wait(left):
                return False

    def subscribe(self) -> None:
        with self._lock:
            self.subscribers += 1

    def unsubscribe(self) -> None:
        with self._lock:
            self.subscribers -= 1

    def __len__(self) -> int:
        return max(0, self.last_seq - self._first_seq + 1)


class MetricSeries:
    """The last 900 (ts, cpu %, ram %) points of one deployment, in three ``array('d')``
    rings (24 bytes a point instead of ~160 as tuples of floats)."""

    def __init__(self, capacity: int = METRIC_CAPACITY):
        self._capacity = capacity
        self._ts, self._cpu, self._ram = array("d"), array("d"), array("d")
        self._start = 0  # index of the oldest point once the rings are full
        self._lock = threading.Lock()

    def append(self, ts: float, cpu: float, ram: float) -> None:
        with self._lock:
            if len(self._ts) < self._capacity:
                self._ts.append(ts)
                self._cpu.append(cpu)
                self._ram.append(ram)
                return
            i = self._start
            self._ts[i], self._cpu[i], self._ram[i] = ts, cpu, ram
            self._start = (i + 1) % self._capacity

    def since(self, ts: float | None = None) -> list[tuple[float, float, float]]:
        with self._lock:
            n, start = len(self._ts), self._start
            order = range(start, start + n)
            points = [(self._ts[i % n], self._cpu[i % n], self._ram[i % n]) for i in order]
        if ts is None:
            return points
        return [p for p in points if p[0] > ts]

    def latest(self):
        with self._lock:
            if not self._ts:
                return None
            i = (self._start - 1) % len(self._ts)
            return (self._ts[i], self._cpu[i], self._ram[i])

    def __len__(self) -> int:
        return len(self._ts)


class DeploymentRuntime:
    """Everything the engine keeps in memory for one deployment."""

    __slots__ = ("logs", "metrics", "cpu", "ram", "next_log_at", "next_metric_at")

    def __init__(self, epoch: str = ""):
        self.logs = LogStream(epoch=epoch)
        self.metrics = MetricSeries()
        self.cpu: float | None = None  # random-walk position
        self.ram: float | None = None
        self.next_log_at = 0.0
        self.next_metric_at = 0.0


class SimulationState:
    """Registry of runtimes by deployment id, plus open SSE streams per user.

    ``epoch`` is a random token made when the state is: log sequence numbers start
    again at 1 in every server run, so stream event ids are ``<epoch>-<seq>`` and a
    client that reconnects with an id of another run is told to start afresh."""

    def __init__(self, epoch: str | None = None):
        self.epoch = epoch or secrets.token_hex(4)
        self._runtimes: dict[int, DeploymentRuntime] = {}
        self._lock = threading.Lock()
        self._streams_by_user: dict[int, int] = {}
        self._revocations: dict[int, int] = {}
        self._memo: dict = {}

    def runtime(self, deployment_id: int) -> DeploymentRuntime:
        with self._lock:
            runtime = self._runtimes.get(deployment_id)
            if runtime is None:
                runtime = self._runtimes[deployment_id] = DeploymentRuntime(self.epoch)
            return runtime

    def existing(self, deployment_id: int) -> DeploymentRuntime | None:
        with self._lock:
            return self._runtimes.get(deployment_id)

    def drop(self, deployment_id: int) -> None:
        """Forget a deleted deployment and end its live streams."""
        with self._lock:
            runtime = self._runtimes.pop(deployment_id, None)
        if runtime is not None:
            runtime.logs.close()

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._runtimes)

    def open_stream(self, user_id: int, limit: int, total_limit: int | None = None) -> str | None:
        """Count a new stream of ``user_id``. Returns None when it may open, "user"
        when the user has ``limit`` open already, "total" when the server has
        ``total_limit``."""
        with self._lock:
            count = self._streams_by_user.get(user_id, 0)
            if count >= limit:
                return "user"
            if total_limit is not None and sum(self._streams_by_user.values()) >= total_limit:
                return "total"
            self._streams_by_user[user_id] = count + 1
            return None

    def close_stream(self, user_id: int) -> None:
        with self._lock:
            count = self._streams_by_user.get(user_id, 0) - 1
            if count > 0:
                self._streams_by_user[user_id] = count
            else:
                self._streams_by_user.pop(user_id, None)

    def open_stream_count(self) -> int:
        with self._lock:
            return sum(self._streams_by_user.values())

    def fresh(self, key, load, max_age: float, version=None):
        """``load()``, shared by every caller asking for ``key`` within ``max_age``
        seconds and the same ``version``: a thousand streams re-checking the same
        user or deployment read it from the database once."""
        now = time.monotonic()
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None and hit[1] == version and now - hit[0] < max_age:
            return hit[2]
        value = load()
        with self._lock:
            self._memo[key] = (now, version, value)
            if len(self._memo) > 10000:  # users and deployments of the streams open now
                self._memo.clear()
        return value

    def forget(self, key) -> None:
        with self._lock:
            self._memo.pop(key, None)

    def revoke_user(self, user_id: int) -> None:
        """A user was blocked (or signed out everywhere): their open streams re-check
        their access at once, and end."""
        with self._lock:
            self._revocations[user_id] = self._revocations.get(user_id, 0) + 1
            self._memo.pop(("user", user_id), None)
            runtimes = list(self._runtimes.values())
        for runtime in runtimes:  # live streams sleep on their log stream: wake them
            runtime.logs.wake()

    def set_fencing_token(self, token: int | None) -> None:
        """The engine's lease token (issue 15). Only a shared state fences its writes
        (``RedisSimulationState``); in one process there is nobody to fence."""

    def close(self) -> None:
        """Release what the state holds outside memory (the Redis state's reader and
        writer); nothing here."""

    def revocation_count(self, user_id: int) -> int:
        """Streams remember this when they open and stop once it changes."""
        with self._lock:
            return self._revocations.get(user_id, 0)


def _wake_in_turns(events: list) -> None:
    """Set ``events`` one per turn of gevent's loop, so the I/O of other connections
    (accepting, reading, answering a page) runs between slices of a fan-out. Without
    gevent (threads, Flask's test client) the OS interleaves the readers: set them all."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        for event in events:
            event.set()
        return
    import gevent

    def turns():
        for event in events:
            # A timer, not sleep(0): sleep(0) is a callback that may run before the
            # loop polls its sockets again; a timer always fires after the poll.
            gevent.sleep(0.0005)
            event.set()

    gevent.spawn(turns)
