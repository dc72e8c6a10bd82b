"""Logs, metrics and live fan-out in Redis, for several app processes (issue 15).

With ``SAMOSVAL_REDIS_URL`` set, :class:`RedisSimulationState` takes the place of
the in-memory :class:`~samosval.simulator.state.SimulationState`, with the same
interface: the engine, the domain and ``sse.py`` do not know which one they use.

Keys (``REDIS_PREFIX`` first, "samosval:" by default):

- ``logs:<id>``: a Redis Stream per deployment, ``XADD ... MAXLEN 1000`` (exact, so
  "the last 1,000 lines" holds). Entry ids are ``0-<seq>``: the sequence number *is*
  the entry id, so resuming after ``Last-Event-ID: <epoch>-<seq>`` is ``XRANGE (0-<seq>``
  and every process names a line alike. Each entry also carries its epoch (``e``).
- ``logmeta:<id>``: a hash with the stream's ``epoch``, last ``seq`` and ``status``. A
  stream is (re)created with a fresh epoch when its hash is missing (first line, or
  Redis lost its data): a client holding an id of the old stream gets ``reset``.
- ``metrics:<id>``: a Redis Stream of ``(ts, cpu, ram)`` points, ``MAXLEN 900``.
- ``control``: status changes, deletions and revocations, read by every process, so
  a viewer on any process sees them and the engine's process learns a user's stop.
- ``engine:fence``: the fencing token of the engine's lease (see
  :meth:`RedisSimulationState.set_fencing_token`). Every write is a Lua script that
  refuses it when the writer's token is below the fence, so a stale leader can
  never write a line.
- ``sse:user:<user id>`` (and ``sse:all`` with ``SSE_MAX_STREAMS_CLUSTER``): the open
  streams of the cluster, a sorted set scored by lease expiry; each process renews
  its own, so a killed process frees its slots within ``STREAM_LEASE_SECONDS``.

Writes go through one queue per process, flushed by a writer thread (a greenlet
under gevent) in one pipelined round trip: the engine's thousands of lines a tick
cost one exchange, and never make it wait. Reads from Redis flush the queue first,
so a process reads its own writes.

Fan-out: one reader per process does a blocking ``XREAD`` on ``control`` and on the
streams that have viewers here, and feeds each such stream's local mirror, the very
:class:`~samosval.simulator.state.LogStream` ring of the embedded mode (shared
encoding, wake-up in slices). A thousand viewers on a process cost one Redis read.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
import time
import weakref
from collections import deque

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .state import (
    LOG_CAPACITY,
    METRIC_CAPACITY,
    DeploymentRuntime,
    LiveUnavailable,
    LogLine,
    LogStream,
    SimulationState,
)

log = logging.getLogger("samosval.live")

READ_BLOCK_MS = 5000  # the reader's XREAD waits this long before asking again
READ_COUNT = 2000  # entries per XREAD and stream
FLUSH_BATCH = 2000  # queued writes per pipelined round trip
MAX_QUEUED_WRITES = 200_000  # beyond this (Redis down for long) the oldest writes are dropped
RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)  # reconnect back-off of the reader and the writer
STREAM_LEASE_SECONDS = 30  # a dead process's stream slots free themselves after this
CONTROL_MAXLEN = 10000
REDIS_POOL_SIZE = 50  # connections per process for requests and the writer
# The thread (a greenlet under gevent) whose writes carry the engine's fencing token:
# the engine's own (``SimulationEngine.start``).
FENCED_THREAD = "SimulationEngine"

# A fenced write below the fence is refused; one above it raises the fence first, so
# the fence comes back with the leader's first write after Redis lost its data (a
# restart without persistence), not only at the next takeover.
_FENCE_CHECK = """
if ARGV[1] ~= '' then
  local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
  local token = tonumber(ARGV[1])
  if token < fence then return -1 end
  if token > fence then redis.call('SET', KEYS[3], ARGV[1]) end
end
"""

# KEYS: stream, meta, fence, control. ARGV: token, candidate epoch, maxlen, ts, level,
# text, deployment id, control maxlen, writer, write number. A new epoch is announced
# on ``control``: the processes following the stream read it again from its start. The
# writer's last write number is kept in ``w``: a batch sent again after a connection
# broke mid-way (some of it may have been applied) writes no line twice.
APPEND_LOG = (
    _FENCE_CHECK
    + """
local mark = ARGV[9] .. ':'
local done = redis.call('HGET', KEYS[2], 'w')
if done and string.sub(done, 1, #mark) == mark
    and tonumber(string.sub(done, #mark + 1)) >= tonumber(ARGV[10]) then
  return 0
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'k', 'epoch', 'd', ARGV[7])
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '0-' .. seq,
  'e', epoch, 't', ARGV[4], 'l', ARGV[5], 'x', ARGV[6])
redis.call('HSET', KEYS[2], 'w', mark .. ARGV[10])
return seq
"""
)

# KEYS: stream, unused, fence. ARGV: token, maxlen, ts, cpu, ram.
APPEND_METRIC = (
    _FENCE_CHECK
    + """
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 't', ARGV[3], 'c', ARGV[4], 'r', ARGV[5])
return 1
"""
)

# KEYS: meta, control, fence. ARGV: token, status, origin, deployment id, control maxlen.
SET_STATUS = (
    _FENCE_CHECK
    + """
redis.call('HSET', KEYS[1], 'status', ARGV[2])
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
  'k', 'status', 'o', ARGV[3], 'd', ARGV[4], 's', ARGV[2], 'q', seq)
return tonumber(seq)
"""
)

# KEYS: fence. ARGV: token. Raises the fence, never lowers it; returns the fence.
RAISE_FENCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return token
end
return current
"""

# KEYS: user set, cluster set. ARGV: member, user limit, cluster limit ('' = none), lease.
OPEN_STREAM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 'user' end
if ARGV[3] ~= '' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 'total' end
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(lease * 2))
redis.call('EXPIRE', KEYS[2], math.ceil(lease * 2))
return 'ok'
"""

# KEYS: the sets to renew. ARGV: lease, then members.
RENEW_STREAMS = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  for i = 2, #ARGV do
    redis.call('ZADD', key, 'XX', until_, ARGV[i])
  end
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[1]) * 2))
end
return 1
"""


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _seq_of(entry_id) -> int:
    return int(_decode(entry_id).rpartition("-")[2])


def _line(entry) -> LogLine:
    entry_id, fields = entry
    return LogLine(_seq_of(entry_id), float(fields[b"t"]), _decode(fields[b"l"]), _decode(fields[b"x"]))


class RedisLogStream(LogStream):
    """One deployment's log stream in Redis. ``append`` and ``set_status`` write to
    Redis (through the process's queue); while this process has viewers of it, the
    inherited ring is a mirror fed by the process's reader, and the viewers read and
    wait on it exactly as in the embedded mode. Without viewers, reads go to Redis.
    ``status`` is kept in step on every process through the ``control`` stream."""

    def __init__(self, live: RedisSimulationState, deployment_id: int, status: str | None = None):
        super().__init__(LOG_CAPACITY, epoch="")
        self._live = live
        self.deployment_id = deployment_id
        self.key = live.key(f"logs:{deployment_id}")
        self.meta_key = live.key(f"logmeta:{deployment_id}")
        self.status = status
        self.synced = False  # the ring mirrors Redis (this process has viewers)
        self._status_at: int | None = None  # a status change waits for this line
        self._sync_lock = threading.Lock()

    # -- writes: to Redis, through the queue ------------------------------------------
    def append(self, ts: float, level: str, text: str) -> None:
        self._live.enqueue(("log", self.deployment_id, ts, level, text))

    def set_status(self, status: str) -> None:
        """The new status holds here at once (the engine in this process reads it);
        viewers hear of it once they have the lines written before it (below)."""
        with self._lock:
            if status == self.status:
                return
            self.status = status
        self._live.enqueue(("status", self.deployment_id, status, self))

    def apply_status(self, status: str, after_seq: int | None = None) -> None:
        """A status set elsewhere (``control``, or read from Redis), written when the
        stream held ``after_seq`` lines."""
        with self._lock:
            if status == self.status:
                return
            self.status = status
            self._announce_status(after_seq)

    def status_written(self, after_seq: int) -> None:
        """Redis took this process's status change after line ``after_seq``."""
        with self._lock:
            self._announce_status(after_seq)

    def _announce_status(self, after_seq: int | None) -> None:
        """Bump ``status_version`` (what viewers watch) once the mirror holds line
        ``after_seq``: a viewer gets "stopped by oleg" before the status event, as in
        the embedded mode. The caller holds the lock."""
        if self.synced and after_seq is not None and self._last < after_seq:
            self._status_at = max(self._status_at or 0, after_seq)
            return
        self._status_at = None
        self.status_version += 1
        self._notify()

    def _announce_due(self) -> None:
        if self._status_at is not None and (not self.synced or self._last >= self._status_at):
            self._announce_status(None)

    # -- the mirror, fed by the reader ------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The newest line's number: the mirror's while synced, else Redis's."""
        if self.synced:
            return self._last
        try:
            return self.stored()[1]
        except LiveUnavailable:
            return self._last

    @last_seq.setter
    def last_seq(self, value: int) -> None:
        self._last = value

    def mirror(self, entries) -> bool:
        """Take entries read from Redis. Returns False when they belong to another
        epoch (the stream was recreated): the caller reloads the mirror."""
        with self._lock:
            if not self.synced:
                return True
            for entry in entries:
                fields = entry[1]
                if _decode(fields[b"e"]) != self.epoch:
                    return False
                seq = _seq_of(entry[0])
                if seq <= self._last:
                    continue
                if seq != self._last + 1:  # fell off Redis's ring before we read it
                    self._restart_ring(seq - 1)
                line = _line(entry)
                self._push(line.ts, line.level, line.text)
            self._announce_due()
            self._notify()
            return True

    def load(self, epoch: str, entries, last_seq: int) -> None:
        """Fill the mirror from a full read of the stream (``entries`` oldest first)."""
        with self._lock:
            if epoch != self.epoch:
                self.epoch = epoch
                self._restart_ring(0)
            if entries:
                first = _seq_of(entries[0][0])
                if first > self._last + 1 or self._last > last_seq:
                    self._restart_ring(first - 1)
                for entry in entries:
                    seq = _seq_of(entry[0])
                    if seq > self._last:
                        line = _line(entry)
                        self._push(line.ts, line.level, line.text)
            elif last_seq != self._last:
                self._restart_ring(last_seq)
            self.synced = True
            if self._status_at is not None:  # loaded past it, or a new epoch
                self._announce_status(None)
            self._notify()

    def _restart_ring(self, last_seq: int) -> None:
        """An empty ring whose next line is ``last_seq + 1`` (the caller holds the lock)."""
        self._blocks.clear()
        self._base_seq = self._first_seq = last_seq + 1
        self._last = last_seq
        self._chunks.clear()
        self._chunk_bytes = 0

    def _push(self, ts: float, level: str, text: str) -> None:
        """The embedded ring's append without its lock and notification."""
        self._last += 1
        self._store(self._last, ts, level, text)

    # -- viewers --------------------------------------------------------------------
    def subscribe(self) -> None:
        """A viewer here: the first one loads the mirror and has the reader follow
        the stream. Raises :class:`LiveUnavailable` when Redis cannot be reached."""
        with self._sync_lock:
            if not self.synced:
                self._live.follow(self)
            with self._lock:
                self.subscribers += 1

    def unsubscribe(self) -> None:
        with self._sync_lock:
            with self._lock:
                self.subscribers -= 1
                last = self.subscribers <= 0
            if last:
                self._live.unfollow(self)

    # -- reads: the mirror while synced, else Redis -----------------------------------------
    def read_after(self, seq: int, limit: int | None = None) -> tuple[list[LogLine], int]:
        if self.synced:
            return super().read_after(seq, limit)
        entries = self._live.call(lambda r: r.xrange(self.key, f"(0-{max(0, seq)}", "+", count=limit))
        lines = [_line(entry) for entry in entries]
        missed = max(0, lines[0].seq - seq - 1) if lines else 0
        return lines, missed

    def chunk_after(self, seq: int, limit: int, encode) -> tuple[bytes, int, int]:
        if self.synced:
            return super().chunk_after(seq, limit, encode)
        lines, missed = self.read_after(seq, limit)
        return (encode(lines), lines[-1].seq, missed) if lines else (b"", seq, missed)

    def tail(self, count: int) -> list[LogLine]:
        if self.synced:
            return super().tail(count)
        if count <= 0:
            return []
        entries = self._live.call(lambda r: r.xrevrange(self.key, "+", "-", count=count))
        return [_line(entry) for entry in reversed(entries)]

    def snapshot(self) -> list[LogLine]:
        if self.synced:
            return super().snapshot()
        return [_line(entry) for entry in self._live.call(lambda r: r.xrange(self.key, "-", "+"))]

    def stored(self) -> tuple[str, int, int]:
        """``(epoch, last seq, lines held)`` as Redis has them."""

        def read(r):
            pipe = r.pipeline(transaction=False)
            pipe.hmget(self.meta_key, "epoch", "seq")
            pipe.xlen(self.key)
            return pipe.execute()

        (epoch, seq), length = self._live.call(read)
        return _decode(epoch or b""), int(seq or 0), int(length)

    def __len__(self) -> int:
        if self.synced:
            return super().__len__()
        return self.stored()[2]


class RedisMetricSeries:
    """One deployment's metric points in a Redis Stream capped at 900."""

    def __init__(self, live: RedisSimulationState, deployment_id: int):
        self._live = live
        self.deployment_id = deployment_id
        self.key = live.key(f"metrics:{deployment_id}")

    def append(self, ts: float, cpu: float, ram: float) -> None:
        self._live.enqueue(("metric", self.deployment_id, ts, cpu, ram))

    @staticmethod
    def _point(entry) -> tuple[float, float, float]:
        fields = entry[1]
        return (float(fields[b"t"]), float(fields[b"c"]), float(fields[b"r"]))

    def since(self, ts: float | None = None) -> list[tuple[float, float, float]]:
        if ts is None:
            return [self._point(e) for e in self._live.call(lambda r: r.xrange(self.key, "-", "+"))]
        # Newest first, in pages, until a point at or before ``ts``: a chart asking
        # for the last few seconds reads a few entries, not 900.
        points: list[tuple[float, float, float]] = []
        upper = "+"
        while True:
            page = self._live.call(lambda r, upper=upper: r.xrevrange(self.key, upper, "-", count=100))
            for entry in page:
                point = self._point(entry)
                if point[0] <= ts:
                    return points[::-1]
                points.append(point)
            if len(page) < 100:
                return points[::-1]
            upper = "(" + _decode(page[-1][0])

    def latest(self):
        entries = self._live.call(lambda r: r.xrevrange(self.key, "+", "-", count=1))
        return self._point(entries[0]) if entries else None

    def __len__(self) -> int:
        return int(self._live.call(lambda r: r.xlen(self.key)))


class RedisRuntime(DeploymentRuntime):
    __slots__ = ()

    def __init__(self, live: RedisSimulationState, deployment_id: int, status: str | None = None):
        self.logs = RedisLogStream(live, deployment_id, status)
        self.metrics = RedisMetricSeries(live, deployment_id)
        self.cpu = None
        self.ram = None
        self.next_log_at = 0.0
        self.next_metric_at = 0.0


class RedisSimulationState(SimulationState):
    """The registry of :class:`SimulationState`, its data in Redis (see the module)."""

    def __init__(
        self,
        url: str,
        prefix: str = "samosval:",
        cluster_stream_limit: int | None = None,
        connect_timeout: float = 1.0,
    ):
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.cluster_stream_limit = cluster_stream_limit
        self.process = secrets.token_hex(6)  # names this process in control events and slots
        options = dict(
            socket_connect_timeout=connect_timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 1),  # one retry: a connection left over from a restart
            health_check_interval=30,
        )
        # Greenlets share this client: a burst of viewers waits for one of the pool's
        # connections (redis-py's default pool fails the 101st call at once: a 503).
        self.redis = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url, max_connections=REDIS_POOL_SIZE, timeout=5, socket_timeout=5, **options
            )
        )
        # The reader blocks in XREAD: its own connection, with room for the block.
        self._reader_redis = redis.Redis.from_url(url, socket_timeout=READ_BLOCK_MS / 1000 + 5, **options)
        self._append_log = self.redis.register_script(APPEND_LOG)
        self._append_metric = self.redis.register_script(APPEND_METRIC)
        self._set_status = self.redis.register_script(SET_STATUS)
        self._raise_fence = self.redis.register_script(RAISE_FENCE)
        self._open_stream = self.redis.register_script(OPEN_STREAM)
        self._renew_streams = self.redis.register_script(RENEW_STREAMS)
        self.fence_key = self.key("engine:fence")
        self.control_key = self.key("control")
        self.poke_key = self.key(f"poke:{self.process}")
        self.fencing_token: int | None = None
        self.refused_writes = 0  # writes the fence refused (a stale leader's)
        self.dropped_writes = 0  # writes given up while Redis was down too long
        self.available = True
        self._queue: deque = deque()
        self._write_numbers = itertools.count(1)  # in queue order (``APPEND_LOG``)
        self._flush_lock = threading.Lock()
        self._queued = threading.Event()
        self._followed: dict[bytes, RedisLogStream] = {}
        self._last_ids: dict[bytes, str] = {}
        self._slots: dict[int, list[str]] = {}  # user id -> this process's stream slots
        self._slot_counter = 0
        self._control_id = "0-0"
        self._poke_id = "0-0"
        self._read_failures = 0
        self._write_failures = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._start_lock = threading.Lock()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader and the writer (first use; a forked worker starts its own)."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
            self._control_id = self._last_control_id()
            self._renew_at = time.monotonic() + STREAM_LEASE_SECONDS / 3
            for step, name in (("_read_once", "LiveReader"), ("_write_once", "LiveWriter")):
                # The threads hold the state weakly between turns: a state nobody
                # uses any more (an app of a finished test) stops them.
                thread = threading.Thread(
                    target=_drive, args=(weakref.ref(self), step), name=name, daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the reader and the writer, free this process's
        stream slots."""
        self._stopping.set()
        self._queued.set()
        try:
            self._poke()  # out of its XREAD
        except redis.RedisError:
            pass
        for thread in self._threads:
            thread.join(timeout)
        try:
            self.flush()
            self._release_all_slots()
            self.redis.delete(self.poke_key)
        except redis.RedisError:
            pass
        for client in (self.redis, self._reader_redis):
            client.close()  # its connections; a later call would open new ones

    def _last_control_id(self) -> str:
        try:
            entries = self.redis.xrevrange(self.control_key, "+", "-", count=1)
        except redis.RedisError:
            return "0-0"
        return _decode(entries[0][0]) if entries else "0-0"

    def call(self, fn):
        """``fn(redis)`` after this process's queued writes; a Redis failure becomes
        :class:`LiveUnavailable` (503 with Retry-After, never a 500)."""
        try:
            self.flush()
            result = fn(self.redis)
        except redis.RedisError as exc:
            self.available = False
            raise LiveUnavailable() from exc
        self.available = True
        return result

    # -- the registry ----------------------------------------------------------------
    def runtime(self, deployment_id: int) -> RedisRuntime:
        self.start()
        with self._lock:
            runtime = self._runtimes.get(deployment_id)
        if runtime is not None:
            return runtime
        status = None
        try:
            raw = self.redis.hget(self.key(f"logmeta:{deployment_id}"), "status")
            status = _decode(raw) if raw is not None else None
        except redis.RedisError:
            self.available = False
        with self._lock:
            runtime = self._runtimes.get(deployment_id)
            if runtime is None:
                runtime = self._runtimes[deployment_id] = RedisRuntime(self, deployment_id, status)
            return runtime

    def existing(self, deployment_id: int) -> RedisRuntime | None:
        """This process's runtime, or one for what another process wrote (None when
        nothing was written for the deployment)."""
        with self._lock:
            runtime = self._runtimes.get(deployment_id)
        if runtime is not None:
            return runtime
        try:
            self.flush()
            known = self.redis.exists(
                self.key(f"logmeta:{deployment_id}"), self.key(f"metrics:{deployment_id}")
            )
        except redis.RedisError:
            # Cannot tell: a runtime whose reads answer LiveUnavailable (a page gets
            # 503), while the engine goes on queueing its writes.
            self.available = False
            return self.runtime(deployment_id)
        return self.runtime(deployment_id) if known else None

    def drop(self, deployment_id: int) -> None:
        super().drop(deployment_id)
        self.enqueue(("drop", deployment_id))

    def revoke_user(self, user_id: int) -> None:
        super().revoke_user(user_id)
        self.enqueue(("revoke", user_id))

    def forget(self, key) -> None:
        super().forget(key)
        self.enqueue(("forget", json.dumps(list(key))))

    # -- fencing ----------------------------------------------------------------------
    def set_fencing_token(self, token: int | None) -> None:
        """The engine of this process holds the lease under ``token``: raise the fence
        in Redis to it (never lower), so writes under any older token are refused
        from this moment, and stamp the engine's writes with it.

        Only the writes made in the engine's thread (``FENCED_THREAD``; under gevent
        its greenlet, domain calls of the engine included) carry the token: a user's
        action on any process, the old leader's included, is nobody's stale write and
        goes through unfenced. None: the engine writes without a token."""
        self.fencing_token = token
        if token is not None:
            # Best effort: every fenced write raises the fence too (``_FENCE_CHECK``), so a
            # takeover while Redis is away still leads, and builds and rollouts, which
            # need only the database, go on.
            try:
                self._raise_fence(keys=[self.fence_key], args=[int(token)])
            except redis.RedisError as exc:
                self.available = False
                log.warning("engine fence not raised in Redis yet (%s): the first write will", exc)

    # -- writes ------------------------------------------------------------------------
    def enqueue(self, item: tuple) -> None:
        """Queue a write; it gets its number and the fencing token it is made under."""
        self.start()
        token = self.fencing_token if threading.current_thread().name == FENCED_THREAD else None
        queue = self._queue
        queue.append((*item, next(self._write_numbers), "" if token is None else str(int(token))))
        if len(queue) > MAX_QUEUED_WRITES:
            queue.popleft()
            self.dropped_writes += 1
        self._queued.set()

    def flush(self) -> None:
        """Write every queued item now, in order (raises RedisError if Redis is down;
        the items stay queued)."""
        with self._flush_lock:  # also waits for a batch the writer is sending
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(FLUSH_BATCH, len(self._queue)))]
                try:
                    results = self._write(batch)
                except redis.RedisError:
                    self._queue.extendleft(reversed(batch))
                    raise
                for item, result in zip(batch, results):
                    if item[0] == "status":
                        item[3].status_written(None if result == -1 else int(result))
                refused = sum(1 for result in results if result == -1)
                if refused:
                    if not self.refused_writes:
                        log.warning("the fence refused %d write(s): this process's lease is stale", refused)
                    self.refused_writes += refused

    def _write(self, batch: list[tuple]) -> list:
        pipe = self.redis.pipeline(transaction=False)
        fence = self.fence_key
        for item in batch:
            kind, token = item[0], item[-1]
            if kind == "log":
                _kind, deployment_id, ts, level, text, number, _token = item
                self._append_log(
                    keys=[
                        self.key(f"logs:{deployment_id}"),
                        self.key(f"logmeta:{deployment_id}"),
                        fence,
                        self.control_key,
                    ],
                    args=[
                        token,
                        secrets.token_hex(4),
                        LOG_CAPACITY,
                        repr(float(ts)),
                        level,
                        text,
                        deployment_id,
                        CONTROL_MAXLEN,
                        self.process,
                        number,
                    ],
                    client=pipe,
                )
            elif kind == "metric":
                _kind, deployment_id, ts, cpu, ram, _number, _token = item
                self._append_metric(
                    keys=[self.key(f"metrics:{deployment_id}"), self.key(f"metrics:{deployment_id}"), fence],
                    args=[token, METRIC_CAPACITY, repr(float(ts)), repr(float(cpu)), repr(float(ram))],
                    client=pipe,
                )
            elif kind == "status":
                _kind, deployment_id, status, _logs, _number, _token = item
                self._set_status(
                    keys=[self.key(f"logmeta:{deployment_id}"), self.control_key, fence],
                    args=[token, status, self.process, deployment_id, CONTROL_MAXLEN],
                    client=pipe,
                )
            elif kind == "drop":
                deployment_id = item[1]
                pipe.delete(
                    self.key(f"logs:{deployment_id}"),
                    self.key(f"logmeta:{deployment_id}"),
                    self.key(f"metrics:{deployment_id}"),
                )
                self._control(pipe, k="drop", d=deployment_id)
            elif kind == "revoke":
                self._control(pipe, k="revoke", u=item[1])
            elif kind == "forget":
                self._control(pipe, k="forget", m=item[1])
        return pipe.execute()

    def _control(self, pipe, **fields) -> None:
        pipe.xadd(self.control_key, {"o": self.process, **fields}, maxlen=CONTROL_MAXLEN, approximate=True)

    def _write_once(self) -> None:
        """One turn of the writer: wait for queued writes (or the time to renew this
        process's stream slots), then send them."""
        self._queued.wait(max(0.0, self._renew_at - time.monotonic()))
        self._queued.clear()
        try:
            self.flush()
            if time.monotonic() >= self._renew_at:
                self._renew_slots()
                self._renew_at = time.monotonic() + STREAM_LEASE_SECONDS / 3
            self._write_failures = 0
            self.available = True
        except redis.RedisError as exc:
            self.available = False
            if self._write_failures == 0:
                log.warning("Redis write failed (%s); retrying", exc)
            delay = RETRY_SECONDS[min(self._write_failures, len(RETRY_SECONDS) - 1)]
            self._write_failures += 1
            self._stopping.wait(delay)
            self._queued.set()

    # -- the reader: control events and the streams viewed here ------------------------
    def follow(self, logs: RedisLogStream) -> None:
        """Load ``logs``'s mirror from Redis and have the reader follow it."""
        self.start()
        try:
            self.flush()
            self._load(logs, create=True, follow=True)
            self._poke()
        except redis.RedisError as exc:
            self.available = False
            raise LiveUnavailable() from exc

    def unfollow(self, logs: RedisLogStream) -> None:
        with logs._lock:
            logs.synced = False
            logs._restart_ring(0)  # the memory goes; the next viewer loads afresh
            logs._announce_due()
        with self._lock:
            self._followed.pop(logs.key.encode(), None)

    def _load(self, logs: RedisLogStream, create: bool = False, follow: bool = False) -> None:
        """One consistent read of the stream (and its epoch) into the mirror; the
        reader's reloads skip a stream whose last viewer left meanwhile."""
        if not follow and not logs.synced:
            return
        pipe = self.redis.pipeline(transaction=True)
        if create:  # a viewer's ids need an epoch before the first line
            pipe.hsetnx(logs.meta_key, "epoch", secrets.token_hex(4))
        pipe.hmget(logs.meta_key, "epoch", "seq", "status")
        pipe.xrange(logs.key, "-", "+")
        result = pipe.execute()
        (epoch, seq, status), entries = result[-2], result[-1]
        if create and result[0]:  # a new epoch: other followers read the stream again
            self._control(self.redis, k="epoch", d=logs.deployment_id)
        if status is not None:
            logs.apply_status(_decode(status))
        logs.load(_decode(epoch or b""), entries, int(seq or 0))
        with self._lock:
            self._followed[logs.key.encode()] = logs
            self._last_ids[logs.key.encode()] = f"0-{logs._last}"

    def _poke(self) -> None:
        """Wake the reader from its XREAD, so it reads the newly followed stream."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.poke_key, {"p": 1}, maxlen=8)
        pipe.expire(self.poke_key, 86400)  # a killed process leaves it for a day at most
        pipe.execute()

    def _read_once(self) -> None:
        """One turn of the reader: a blocking XREAD of ``control``, this process's poke
        stream and the streams viewed here, then each entry to its place."""
        try:
            if self._read_failures:
                self._resync()
            with self._lock:
                streams = {key.decode(): self._last_ids[key] for key in self._followed}
            streams[self.control_key] = self._control_id
            streams[self.poke_key] = self._poke_id
            reply = self._reader_redis.xread(streams, count=READ_COUNT, block=READ_BLOCK_MS)
            if self._read_failures:
                log.info("Redis reachable again: live streams resumed")
            self._read_failures = 0
            self.available = True
            for key, entries in reply or ():
                self._dispatch(_decode(key), entries)
        except redis.RedisError as exc:
            self.available = False
            if self._read_failures == 0:
                log.warning("Redis read failed (%s); reconnecting", exc)
            delay = RETRY_SECONDS[min(self._read_failures, len(RETRY_SECONDS) - 1)]
            self._read_failures += 1
            self._stopping.wait(delay)
        except Exception:  # a bug must not end fan-out for the whole process
            log.exception("live reader failed")
            self._stopping.wait(1.0)

    def _dispatch(self, key: str, entries) -> None:
        if not entries:
            return
        last_id = _decode(entries[-1][0])
        if key == self.control_key:
            self._control_id = last_id
            for _entry_id, fields in entries:
                self._apply_control({_decode(k): _decode(v) for k, v in fields.items()})
            return
        if key == self.poke_key:
            self._poke_id = last_id
            return
        raw = key.encode()
        with self._lock:
            logs = self._followed.get(raw)
        if logs is None:
            return
        if logs.mirror(entries):
            with self._lock:
                if raw in self._followed:
                    self._last_ids[raw] = f"0-{logs._last}"
        else:
            self._load(logs, create=True)  # recreated under a new epoch: viewers get ``reset``

    def _apply_control(self, event: dict) -> None:
        kind = event.get("k")
        if kind == "epoch":  # the stream was recreated: entries restart at 0-1
            with self._lock:
                logs = self._followed.get(self.key(f"logs:{event['d']}").encode())
            if logs is not None:
                self._load(logs, create=True)
            return
        if event.get("o") == self.process:
            return  # applied here when it was made
        if kind == "status":
            runtime = super().existing(int(event["d"]))
            if runtime is not None:
                runtime.logs.apply_status(event["s"], int(event.get("q") or 0))
        elif kind == "drop":
            super().drop(int(event["d"]))
        elif kind == "revoke":
            super().revoke_user(int(event["u"]))
        elif kind == "forget":
            super().forget(tuple(json.loads(event["m"])))

    def _resync(self) -> None:
        """After losing Redis: reload every mirror (a restart may have recreated
        streams under new epochs), every status, and wake every viewer to re-check
        access (revocations made meanwhile were not heard)."""
        with self._lock:
            followed = list(self._followed.values())
            runtimes = list(self._runtimes.items())
        self._control_id = self._last_control_id()
        for logs in followed:
            self._load(logs, create=True)
        pipe = self.redis.pipeline(transaction=False)
        for deployment_id, _runtime in runtimes:
            pipe.hget(self.key(f"logmeta:{deployment_id}"), "status")
        for (_deployment_id, runtime), raw in zip(runtimes, pipe.execute() if runtimes else []):
            if raw is not None:
                runtime.logs.apply_status(_decode(raw))
            runtime.logs.wake()
        with self._lock:
            self._memo.clear()

    # -- stream slots across the cluster ---------------------------------------------------
    def open_stream(self, user_id: int, limit: int, total_limit: int | None = None) -> str | None:
        """The per-user cap counts the streams of every process (a Redis sorted set
        of leased slots); ``total_limit`` (``SSE_MAX_STREAMS``) stays per process: it
        protects this process's sockets and memory. ``SSE_MAX_STREAMS_CLUSTER`` caps
        the cluster as a whole."""
        if total_limit is not None and self.open_stream_count() >= total_limit:
            return "total"
        with self._lock:
            self._slot_counter += 1
            member = f"{self.process}:{self._slot_counter}"
        cluster = "" if self.cluster_stream_limit is None else str(int(self.cluster_stream_limit))
        try:
            answer = _decode(
                self._open_stream(
                    keys=[self.key(f"sse:user:{user_id}"), self.key("sse:all")],
                    args=[member, int(limit), cluster, STREAM_LEASE_SECONDS],
                )
            )
        except redis.RedisError as exc:
            self.available = False
            raise LiveUnavailable() from exc
        if answer != "ok":
            return answer
        with self._lock:
            self._slots.setdefault(user_id, []).append(member)
            self._streams_by_user[user_id] = self._streams_by_user.get(user_id, 0) + 1
        return None

    def close_stream(self, user_id: int) -> None:
        with self._lock:
            members = self._slots.get(user_id)
            member = members.pop() if members else None
            if members == []:
                del self._slots[user_id]
        super().close_stream(user_id)
        if member is not None:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.zrem(self.key(f"sse:user:{user_id}"), member)
                pipe.zrem(self.key("sse:all"), member)
                pipe.execute()
            except redis.RedisError:
                pass  # the slot's lease runs out by itself

    def _renew_slots(self) -> None:
        with self._lock:
            slots = {user_id: list(members) for user_id, members in self._slots.items()}
        for user_id, members in slots.items():
            for start in range(0, len(members), 500):
                self._renew_streams(
                    keys=[self.key(f"sse:user:{user_id}"), self.key("sse:all")],
                    args=[STREAM_LEASE_SECONDS, *members[start : start + 500]],
                )

    def _release_all_slots(self) -> None:
        with self._lock:
            slots, self._slots = self._slots, {}
        pipe = self.redis.pipeline(transaction=False)
        for user_id, members in slots.items():
            pipe.zrem(self.key(f"sse:user:{user_id}"), *members)
            pipe.zrem(self.key("sse:all"), *members)
        pipe.execute()


def _drive(ref, step: str) -> None:
    """Run ``state.<step>()`` until the state stops or is gone."""
    while True:
        state = ref()
        if state is None or state._stopping.is_set():
            return
        getattr(state, step)()
        del state


def make_state(app) -> RedisSimulationState:
    """The state for ``app`` with ``REDIS_URL`` set (``runtime.init_app``)."""
    url = app.config["REDIS_URL"]
    cluster = app.config.get("SSE_MAX_STREAMS_CLUSTER")
    return RedisSimulationState(
        url,
        prefix=app.config.get("REDIS_PREFIX") or "samosval:",
        cluster_stream_limit=int(cluster) if cluster else None,
    )
