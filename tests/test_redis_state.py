"""The Redis-backed live state (issue 15) against a real redis-server: streams capped
at exactly 1,000 lines and 900 points, the same ids on every process, resume and
missed counts, a new epoch when a stream is recreated, fenced writes, status and
revocations reaching other processes, stream slots shared by the cluster, and a
clear ``LiveUnavailable`` when Redis is away.

Each test uses a key prefix of its own on the session's server (no flushing). Two
``RedisSimulationState`` objects stand for two app processes."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest
import redis

from samosval import sse
from samosval.simulator import redis_state
from samosval.simulator.redis_state import RedisSimulationState
from samosval.simulator.state import LOG_CAPACITY, METRIC_CAPACITY, LiveUnavailable
from tests.live import free_port

_numbers = itertools.count()


@pytest.fixture
def prefix():
    return f"redis-state-test-{os.getpid()}-{next(_numbers)}:"


@pytest.fixture
def make(redis_server, prefix):
    made = []

    def make_state(**options):
        state = RedisSimulationState(redis_server.url, prefix=prefix, **options)
        made.append(state)
        return state

    yield make_state
    for state in made:
        state.close()


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


def eventually(condition, timeout=5.0, message="condition not met"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.01)


def fill(logs, count, start=0):
    for n in range(start, start + count):
        logs.append(1_800_000_000 + n, "INFO", f"line {n + 1}")


def test_streams_are_capped_at_exactly_1000_lines_and_900_points(make, client, prefix):
    state = make()
    runtime = state.runtime(1)
    fill(runtime.logs, LOG_CAPACITY + 5)
    for n in range(METRIC_CAPACITY + 5):
        runtime.metrics.append(1_800_000_000 + n, 10.0, 20.0)
    state.flush()
    assert client.xlen(f"{prefix}logs:1") == LOG_CAPACITY == 1000
    assert client.xlen(f"{prefix}metrics:1") == METRIC_CAPACITY == 900
    assert runtime.logs.last_seq == 1005 and len(runtime.logs) == 1000
    assert [line.seq for line in runtime.logs.snapshot()] == list(range(6, 1006))
    assert len(runtime.metrics) == 900 and runtime.metrics.latest() == (1_800_000_904.0, 10.0, 20.0)
    # the entry id is the line's number: every process names a line alike
    assert client.xrevrange(f"{prefix}logs:1", count=1)[0][0] == b"0-1005"


def test_every_process_reads_the_same_lines_under_the_same_ids(make):
    writer, reader = make(), make()
    fill(writer.runtime(3).logs, 30)
    writer.flush()
    seen = reader.existing(3)
    assert seen is not None
    assert [(line.seq, line.text) for line in seen.logs.tail(3)] == [
        (28, "line 28"),
        (29, "line 29"),
        (30, "line 30"),
    ]
    seen.logs.subscribe()
    try:
        assert seen.logs.synced and seen.logs.last_seq == 30
        assert seen.logs.epoch == writer.runtime(3).logs.stored()[0] != ""
        encoded = sse.encode_lines(seen.logs.tail(1), seen.logs.epoch).decode()
        assert f"id: {seen.logs.epoch}-30" in encoded
    finally:
        seen.logs.unsubscribe()
    assert reader.existing(404) is None  # nothing was ever written for it


def test_reading_after_a_line_resumes_exclusively_and_counts_what_fell_off(make):
    writer, reader = make(), make()
    fill(writer.runtime(1).logs, 1100)
    writer.flush()  # another process sees what was sent, not what is queued
    logs = reader.existing(1).logs
    for synced in (False, True):  # from Redis, then from the process's mirror
        if synced:
            logs.subscribe()
        lines, missed = logs.read_after(50, 5)
        assert ([line.seq for line in lines], missed) == ([101, 102, 103, 104, 105], 50)
        lines, missed = logs.read_after(1098)
        assert ([line.seq for line in lines], missed) == ([1099, 1100], 0)
        assert logs.read_after(1100) == ([], 0)
    logs.unsubscribe()


def test_metric_points_after_a_time(make):
    state = make()
    metrics = state.runtime(2).metrics
    for n in range(250):
        metrics.append(1000.0 + n, float(n % 100), 50.0)
    assert [p[0] for p in metrics.since(1245.0)] == [1246.0, 1247.0, 1248.0, 1249.0]
    assert len(metrics.since(1000.0)) == 249 and len(metrics.since()) == 250
    assert metrics.since(5000.0) == []


def test_a_viewer_on_another_process_wakes_with_each_line(make):
    writer, viewer = make(), make()
    fill(writer.runtime(5).logs, 2)
    writer.flush()
    logs = viewer.runtime(5).logs
    logs.subscribe()
    woke = []
    waiting = threading.Thread(target=lambda: woke.append(logs.wait(2, logs.status_version, timeout=5)))
    waiting.start()
    time.sleep(0.05)
    writer.runtime(5).logs.append(1_900_000_000, "WARN", "fresh")
    waiting.join(6)
    assert woke == [True]
    eventually(lambda: logs.last_seq == 3)
    assert logs.tail(1)[0].text == "fresh"
    logs.unsubscribe()
    assert not logs.synced


def test_a_status_reaches_other_processes_after_the_lines_written_before_it(make):
    engine, viewer = make(), make()
    other = viewer.runtime(7).logs
    other.subscribe()
    version = other.status_version
    logs = engine.runtime(7).logs
    logs.append(1.0, "EVENT", "Deployment stopped by oleg")
    logs.set_status("stopped")
    assert logs.status == "stopped"  # at once in the writing process (its engine reads it)
    eventually(lambda: other.status_version != version)
    assert other.status == "stopped"
    assert other.tail(1)[0].text == "Deployment stopped by oleg"  # the line came first
    other.unsubscribe()
    assert make().runtime(7).logs.status == "stopped"  # a process started later reads it


def test_a_recreated_stream_gets_a_new_epoch_and_viewers_a_reset(make, client, prefix):
    writer, viewer = make(), make()
    fill(writer.runtime(9).logs, 3)
    writer.flush()
    logs = viewer.runtime(9).logs
    logs.subscribe()
    first_epoch = logs.epoch
    events = sse.log_events(
        logs, after=None, heartbeat=0.05, retry_ms=None, status_payload=lambda: {}, check_access=lambda: None
    )
    received = []
    while len([e for e in received if "id" in e]) < 3:
        received += sse.parse_events(next(events).decode())
    client.delete(f"{prefix}logs:9", f"{prefix}logmeta:9")  # Redis lost it
    writer.runtime(9).logs.append(2.0, "INFO", "after the loss")
    while not any(e.get("data", "").find("after the loss") >= 0 for e in received):
        received += sse.parse_events(next(events).decode())
    events.close()
    assert logs.epoch != first_epoch
    kinds = [e.get("event") for e in received if e.get("event") in ("reset", None) and "comment" not in e]
    assert "reset" in kinds
    last = received[-1]
    assert last["id"] == f"{logs.epoch}-1"
    logs.unsubscribe()


def as_engine(work):
    """Run ``work()`` in a thread named like the engine's: its writes carry the token."""
    thread = threading.Thread(target=work, name=redis_state.FENCED_THREAD)
    thread.start()
    thread.join(10)


def test_the_fence_refuses_every_write_of_a_stale_leader(make, client, prefix):
    old, new = make(), make()
    old.set_fencing_token(1)
    as_engine(lambda: old.runtime(4).logs.append(1.0, "INFO", "leader 1"))
    old.flush()
    new.set_fencing_token(2)  # took the lease over

    def stale_engine():
        old.runtime(4).logs.append(2.0, "INFO", "stale line")
        old.runtime(4).metrics.append(2.0, 1.0, 1.0)
        old.runtime(4).logs.set_status("failed")

    as_engine(stale_engine)
    old.flush()
    assert old.refused_writes == 3
    as_engine(lambda: new.runtime(4).logs.append(3.0, "INFO", "leader 2"))
    new.flush()
    # A user's action on the old leader's process is nobody's stale write.
    old.runtime(4).logs.append(4.0, "EVENT", "Deployment stopped by oleg")
    old.flush()
    assert [line.text for line in new.runtime(4).logs.snapshot()] == [
        "leader 1",
        "leader 2",
        "Deployment stopped by oleg",
    ]
    assert len(new.runtime(4).metrics) == 0
    assert client.hget(f"{prefix}logmeta:4", "status") is None
    old.set_fencing_token(1)  # never lowers the fence
    assert client.get(f"{prefix}engine:fence") == b"2"


def test_the_leaders_first_write_raises_a_fence_that_redis_lost(make, client, prefix):
    """A Redis restart without persistence forgets the fence: the current leader's next
    write brings it back, and from then on the old token is refused again."""
    old, new = make(), make()
    old.set_fencing_token(1)
    new.set_fencing_token(2)
    client.delete(f"{prefix}engine:fence")  # what the restart does
    as_engine(lambda: new.runtime(5).logs.append(1.0, "INFO", "leader 2"))
    new.flush()
    assert client.get(f"{prefix}engine:fence") == b"2"
    as_engine(lambda: old.runtime(5).logs.append(2.0, "INFO", "stale line"))
    old.flush()
    assert old.refused_writes == 1
    assert [line.text for line in new.runtime(5).logs.snapshot()] == ["leader 2"]


def test_a_takeover_while_redis_is_away_still_leads(prefix):
    """The fence is raised best effort: the lease (in the database) decides who leads;
    the engine's first write raises the fence once Redis is back."""
    state = RedisSimulationState(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
    try:
        state.set_fencing_token(7)  # no exception
        assert state.fencing_token == 7 and not state.available
    finally:
        state._stopping.set()


def test_a_burst_of_callers_waits_for_a_connection_instead_of_failing(make):
    state = make()
    failures, done = [], []

    def caller():
        try:
            state.call(lambda r: r.blpop(state.key("nothing"), 0.3))
            done.append(1)
        except LiveUnavailable as exc:
            failures.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(redis_state.REDIS_POOL_SIZE * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == [] and len(done) == len(threads)


def test_revocations_and_forgotten_rows_reach_every_process(make):
    here, there = make(), make()
    logs = there.runtime(6).logs
    logs.subscribe()
    there.fresh(("session", 11), lambda: {"id": 11}, 60)
    wakeups = logs.wakeups
    here.forget(("session", 11))
    here.revoke_user(3)
    eventually(lambda: logs.wakeups != wakeups and there.revocation_count(3) == 1)
    assert there.fresh(("session", 11), lambda: None, 60) is None  # read again
    logs.unsubscribe()


def test_stream_slots_count_across_processes(make):
    one, two = make(), make()
    assert one.open_stream(7, 2) is None
    assert two.open_stream(7, 2) is None
    assert one.open_stream(7, 2) == "user"
    assert two.open_stream(8, 2) is None  # per user
    one.close_stream(7)
    assert two.open_stream(7, 2) is None
    assert one.open_stream_count() == 0 and two.open_stream_count() == 3
    capped = make(cluster_stream_limit=4)
    assert capped.open_stream(9, 5) is None
    assert capped.open_stream(10, 5) == "total"  # four open in the cluster now
    assert capped.open_stream(10, 5, total_limit=1) == "total"  # and one in this process


def test_a_dead_process_frees_its_stream_slots_when_its_lease_runs_out(make, monkeypatch):
    monkeypatch.setattr(redis_state, "STREAM_LEASE_SECONDS", 0.6)
    alive, dying = make(), make()
    alive.runtime(1)  # starts its writer, which renews its slots
    assert alive.open_stream(5, 2) is None
    assert dying.open_stream(5, 2) is None
    assert alive.open_stream(5, 2) == "user"
    dying._stopping.set()  # as if killed: no release, no renewal
    dying._queued.set()
    time.sleep(1.0)
    assert alive.open_stream(5, 2) is None  # the dead one's slot expired
    assert alive.open_stream(5, 2) == "user"  # the live one's was renewed
    time.sleep(2.5)  # longer than the key's own expiry: renewals keep the set too
    assert alive.open_stream(5, 2) == "user"


def test_an_unreachable_redis_is_a_clear_live_unavailable(prefix):
    state = RedisSimulationState(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
    try:
        started = time.monotonic()
        with pytest.raises(LiveUnavailable):
            state.existing(1).logs.tail(10)  # a page's read: 503
        with pytest.raises(LiveUnavailable):
            state.open_stream(1, 5)
        logs = state.runtime(1).logs
        logs.append(1.0, "INFO", "kept until Redis is back")  # queued, never raises
        logs.set_status("running")
        assert logs.status == "running"
        with pytest.raises(LiveUnavailable):
            logs.subscribe()
        assert logs.subscribers == 0
        assert time.monotonic() - started < 10
        assert not state.available
    finally:
        state._stopping.set()


def test_a_viewer_resumes_after_redis_restarts(make, redis_server):
    writer, viewer = make(), make()
    fill(writer.runtime(12).logs, 5)
    writer.flush()
    logs = viewer.runtime(12).logs
    logs.subscribe()
    before = logs.epoch
    events = sse.log_events(
        logs, after=None, heartbeat=0.05, retry_ms=None, status_payload=lambda: {}, check_access=lambda: None
    )
    received = []
    while len([e for e in received if "id" in e]) < 5:
        received += sse.parse_events(next(events).decode())
    redis_server.restart()  # nothing persisted: every stream is gone
    writer.runtime(12).logs.append(3.0, "INFO", "after the restart")
    deadline = time.monotonic() + 20
    while not any("after the restart" in e.get("data", "") for e in received):
        assert time.monotonic() < deadline, received[-3:]
        received += sse.parse_events(next(events).decode())
    events.close()
    assert logs.epoch != before  # a new stream: told so, not silently renumbered
    assert [e.get("event") for e in received].count("reset") == 1
    assert received[-1]["id"] == f"{logs.epoch}-1"
    logs.unsubscribe()


def test_a_batch_sent_again_after_a_broken_connection_writes_no_line_twice(make, client, prefix):
    state = make()
    state._flush_lock.acquire()  # keep the writer out: this test sends the batch itself
    try:
        fill(state.runtime(13).logs, 3)
        batch = list(state._queue)
        state._queue.clear()
        state._write(batch)
        state._write(batch)  # as a retry does when the first answer never came
    finally:
        state._flush_lock.release()
    fill(state.runtime(13).logs, 1, start=3)
    state.flush()
    assert [line.text for line in state.runtime(13).logs.snapshot()] == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ]
    assert client.xlen(f"{prefix}logs:13") == 4


def test_rate_limits_count_in_redis_in_place_of_the_memory_default():
    from samosval.security import configure_shared_limits

    config = {"REDIS_URL": "redis://cache:6379/0", "REDIS_PREFIX": "p:", "RATELIMIT_STORAGE_URI": "memory://"}
    configure_shared_limits(config)
    assert config["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/0"
    assert config["RATELIMIT_KEY_PREFIX"] == "p:limits"
    assert config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True  # Redis away: limits still apply
    named = {"REDIS_URL": "redis://cache:6379/0", "RATELIMIT_STORAGE_URI": "memcached://m:11211"}
    configure_shared_limits(named)
    assert named["RATELIMIT_STORAGE_URI"] == "memcached://m:11211"  # the operator's choice stays
    embedded = {"REDIS_URL": None, "RATELIMIT_STORAGE_URI": "memory://"}
    configure_shared_limits(embedded)
    assert embedded == {"REDIS_URL": None, "RATELIMIT_STORAGE_URI": "memory://"}
