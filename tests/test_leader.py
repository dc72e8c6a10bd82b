"""The engine lease (samosval/simulator/leader.py) against a real PostgreSQL: acquire,
renew, expiry, takeover with a higher token, release, and the fence that refuses a
stale leader's transaction. Expiry is made by moving ``expires_at`` into the past
(the database's clock decides), never by sleeping."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest

from samosval import db as db_module
from samosval.migrations import upgrade_database
from samosval.simulator import leader
from samosval.simulator.engine import SimulationEngine
from samosval.simulator.state import SimulationState
from tests import factories
from tests.conftest import add_personas

# The lease tests start their own PostgreSQL database: one run, in the SQLite pass.
pytestmark = pytest.mark.backend_neutral


@pytest.fixture
def lease_url(postgres_server):
    name = f"lease_{uuid.uuid4().hex[:10]}"
    url = postgres_server.create_database(name)
    upgrade_database(url)
    yield url
    db_module.close_pools()
    postgres_server.drop_database(name)


@pytest.fixture
def conn(lease_url):
    db = db_module.connect(lease_url)
    yield db
    db.close()


def expire(db) -> None:
    """The holder stopped renewing and its lease ran out (by the database's clock)."""
    db.execute(f"UPDATE engine_lease SET expires_at = {leader.DB_NOW} - 1")


def test_the_first_holder_gets_token_1_and_others_wait(conn):
    assert leader.acquire(conn, "a") == 1
    assert leader.acquire(conn, "b") is None
    row = leader.current(conn)
    assert row["holder"] == "a" and row["token"] == 1 and row["valid"]
    assert 4 < row["expires_at"] - row["now"] <= leader.LEASE_SECONDS


def test_renewal_extends_only_the_current_holders_unexpired_lease(conn):
    leader.acquire(conn, "a", seconds=1)
    before = leader.current(conn)["expires_at"]
    assert leader.renew(conn, "a", 1, seconds=30)
    assert leader.current(conn)["expires_at"] > before + 20
    assert not leader.renew(conn, "b", 1)  # not the holder
    assert not leader.renew(conn, "a", 2)  # not its token
    expire(conn)
    assert not leader.renew(conn, "a", 1)  # too late: acquire again, with a new token


def test_an_expired_lease_is_taken_over_with_a_higher_token(conn):
    assert leader.acquire(conn, "a") == 1
    expire(conn)
    assert leader.acquire(conn, "b") == 2
    assert leader.current(conn)["holder"] == "b"
    assert not leader.renew(conn, "a", 1)
    expire(conn)
    assert leader.acquire(conn, "a") == 3  # every term a new token, whoever takes it


def test_a_released_lease_is_free_at_once(conn):
    leader.acquire(conn, "a")
    assert leader.release(conn, "a", 1)
    assert not leader.current(conn)["valid"]
    assert leader.acquire(conn, "b") == 2
    assert not leader.release(conn, "a", 1)  # no longer its lease: nothing changes
    assert leader.current(conn)["valid"]


def test_a_fenced_transaction_commits_while_the_lease_holds(conn):
    token = leader.acquire(conn, "a")
    leader.fence(conn, token)
    with db_module.transaction(conn):
        conn.execute("INSERT INTO notification_state (name, value) VALUES ('fenced', 1)")
    assert conn.execute("SELECT value FROM notification_state WHERE name = 'fenced'").fetchone()[0] == 1


def test_a_stale_leader_cannot_write_after_a_takeover(conn, lease_url):
    token = leader.acquire(conn, "a")
    leader.fence(conn, token)
    other = db_module.connect(lease_url)
    try:
        expire(other)
        assert leader.acquire(other, "b") == token + 1
    finally:
        other.close()
    with pytest.raises(leader.LeaseLost), db_module.transaction(conn):
        conn.execute("INSERT INTO notification_state (name, value) VALUES ('stale', 1)")
    assert not conn.in_transaction
    assert conn.execute("SELECT 1 FROM notification_state WHERE name = 'stale'").fetchone() is None


def test_an_expired_lease_refuses_writes_even_before_anyone_takes_it(conn):
    token = leader.acquire(conn, "a")
    leader.fence(conn, token)
    expire(conn)
    with pytest.raises(leader.LeaseLost), db_module.transaction(conn):
        conn.execute("INSERT INTO notification_state (name, value) VALUES ('late', 1)")


def test_a_takeover_waits_for_the_fenced_transaction_in_flight(conn, lease_url):
    """The fence check and the writes are one transaction under the writers' lock: a
    takeover cannot commit between them."""
    token = leader.acquire(conn, "a", seconds=0.3)
    leader.fence(conn, token)
    taken = {}

    def take_over():
        other = db_module.connect(lease_url)
        try:
            taken["token"] = leader.acquire(other, "b")
            taken["at"] = time.monotonic()
        finally:
            other.close()

    with db_module.transaction(conn):  # the fence passed
        time.sleep(0.4)  # the lease runs out mid-transaction (the database's clock)
        thief = threading.Thread(target=take_over)
        thief.start()
        thief.join(0.5)
        assert thief.is_alive(), "the takeover committed inside the leader's transaction"
        conn.execute("INSERT INTO notification_state (name, value) VALUES ('in-flight', 1)")
        committed_at = time.monotonic()
    thief.join(10)
    assert taken["token"] == token + 1 and taken["at"] >= committed_at
    assert conn.execute("SELECT value FROM notification_state WHERE name = 'in-flight'").fetchone()[0] == 1


def test_a_session_stopped_inside_a_transaction_cannot_hold_the_takeover_forever(
    conn, lease_url, monkeypatch
):
    """A leader paused (SIGSTOP) mid-transaction keeps its connection: the server ends
    the idle transaction, which frees the writers' lock for the takeover."""
    conn.execute("SET idle_in_transaction_session_timeout = 300")  # db.py's 2 s, shortened
    token = leader.acquire(conn, "a", seconds=0.2)
    conn.execute("BEGIN")
    conn.execute("SELECT pg_advisory_xact_lock(?)", (db_module.WRITE_LOCK_KEY,))
    other = db_module.connect(lease_url)
    try:
        started = time.monotonic()
        while (found := leader.acquire(other, "b")) is None and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert found == token + 1
        assert time.monotonic() - started < 5
    finally:
        other.close()


# --- the process's view: the keeper ------------------------------------------------------


def test_the_keeper_acquires_renews_and_gives_up_leadership(lease_url, conn):
    taken = []
    first = leader.Lease(lease_url, holder="first", on_acquired=taken.append)
    second = leader.Lease(lease_url, holder="second")
    try:
        assert first.tick() == 1 and first.leading and taken == [1]
        assert second.tick() is None and not second.leading
        assert first.tick() == 1  # renewed
        expire(conn)
        assert second.tick() == 2
        assert first.tick() is None  # its renewal fails: it follows
        assert first.describe() == {"leader": False, "holder": "first", "token": 1, "error": None}
        assert second.describe()["leader"] and second.describe()["token"] == 2
    finally:
        first._close()
        second._close()


def test_the_keeper_stops_believing_it_leads_when_renewals_stop(lease_url):
    lease = leader.Lease(lease_url, holder="paused")
    try:
        assert lease.tick() == 1
        later = time.monotonic() + leader.LEASE_SECONDS + 1
        lease.monotonic = lambda: later  # resumed after a pause longer than the lease
        assert lease.token is None and not lease.leading
    finally:
        lease._close()


def test_the_keeper_loop_releases_the_lease_when_stopped(lease_url, conn):
    lease = leader.Lease(lease_url, holder="looping", renew_every=0.05)
    lease.start()
    try:
        deadline = time.monotonic() + 10
        while not lease.leading and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lease.leading
    finally:
        lease.stop()
    assert not lease.is_alive()
    assert not leader.current(conn)["valid"]  # a follower takes over without waiting


# --- the engine: a stale leader writes nothing ---------------------------------------------


def test_an_engine_that_lost_its_lease_writes_nothing_and_steps_down(lease_url, conn):
    db_module.ensure_root(conn, "root")
    users = add_personas(conn)
    request_id = factories.make_request(conn, owner_id=users["dana"], status="approved")
    build_id = factories.make_build(conn, request_id=request_id, built_by=users["oleg"], status="queued")
    engine = SimulationEngine(lease_url, SimulationState(), rng=random.Random(7), speed=1000.0)
    engine.lease = leader.Lease(lease_url, holder="engine")
    engine._local.db = db_module.connect(lease_url)
    try:
        assert engine.lease.tick() == 1
        assert engine._leads(engine.lease) and engine.leading
        now = time.time()
        engine.step(now)  # schedules the queued build
        scheduled = dict(conn.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone())
        assert scheduled["next_step_at"] is not None

        expire(conn)
        assert leader.acquire(conn, "someone-else") == 2
        with pytest.raises(leader.LeaseLost):
            engine.step(now + 60)  # due: it would start the build
        after = dict(conn.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone())
        assert after == scheduled

        engine._step_down("test")
        assert not engine.leading and engine.lease.token is None
        assert not engine._leads(engine.lease)  # another holder's lease is valid
    finally:
        engine._local.db.close()
        engine.lease._close()


# --- what /healthz and /metrics say -------------------------------------------------------------


def test_the_single_engine_of_sqlite_always_leads(app, client, engine, clock, monkeypatch):
    monkeypatch.setattr(engine, "is_alive", lambda: True)
    engine.step(clock.now)
    body = client.get("/healthz").get_json()
    assert body["leader"] is True and body["holder"] is None and body["token"] is None
    assert body["engine"] == "running" and "lease" not in body
    text = client.get("/metrics").get_data(as_text=True)
    assert "samosval_engine_leader 1.0" in text and "samosval_engine_lease_token 0.0" in text


def test_a_following_engine_is_healthy_and_says_who_leads(app, client, engine, clock, monkeypatch, lease_url):
    app.config["DATABASE"] = lease_url
    holder = leader.Lease(lease_url, holder="elsewhere:1:ab")
    engine.lease = leader.Lease(lease_url, holder="here:2:cd")
    monkeypatch.setattr(engine, "is_alive", lambda: True)
    try:
        assert holder.tick() == 1 and engine.lease.tick() is None
        engine.last_beat = clock.now  # the loop turns, following
        body = client.get("/healthz").get_json()
        assert body["status"] == "ok" and body["engine"] == "following"
        assert body["leader"] is False and body["holder"] == "here:2:cd" and body["token"] is None
        assert body["lease"]["holder"] == "elsewhere:1:ab" and body["lease"]["token"] == 1
        assert 0 < body["lease"]["expires_in"] <= leader.LEASE_SECONDS
        text = client.get("/metrics").get_data(as_text=True)
        assert "samosval_engine_leader 0.0" in text and "\nsamosval_engine_tick_lag_seconds " not in text
    finally:
        holder._close()
        engine.lease._close()
