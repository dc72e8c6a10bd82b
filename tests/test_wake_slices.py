"""Fan-out in slices and an engine that shares the loop (issue 14 follow-up, issue 23).

Under gevent the viewers of one deployment wake in slices of ``WAKE_SLICE``, one
loop turn apart, so requests are served between slices; the engine pauses within
a long tick when run() drives it. Timing figures live in bench/README.md."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from samosval.simulator import engine as engine_module
from samosval.simulator import state as state_module
from samosval.simulator.state import LogStream

ROOT = Path(__file__).resolve().parent.parent


def test_readers_beyond_one_slice_wait_on_a_fresh_event(monkeypatch):
    monkeypatch.setattr(state_module, "WAKE_SLICE", 2)
    logs = LogStream()
    events = [logs._change_event() for _ in range(5)]
    assert events[0] is events[1] and events[2] is events[3] and events[4] is not events[3]
    assert len({id(e) for e in events}) == 3


def test_without_gevent_every_slice_wakes_at_once(monkeypatch):
    monkeypatch.setattr(state_module, "WAKE_SLICE", 2)
    logs = LogStream()
    woke = []

    def reader():
        woke.append(logs.wait(0, 0, timeout=5))

    threads = [threading.Thread(target=reader) for _ in range(7)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while logs._changed is None or sum(1 for _ in logs._changed) < 4:
        assert time.monotonic() < deadline, "readers did not start waiting"
        time.sleep(0.01)
    logs.append(1.0, "INFO", "one line")
    for thread in threads:
        thread.join(5)
    assert woke == [True] * 7


GEVENT_SCRIPT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from samosval.simulator import state
    state.WAKE_SLICE = 2
    logs = state.LogStream()
    woke = []
    def reader(n):
        logs.wait(0, 0, timeout=5)
        woke.append(n)
    readers = [gevent.spawn(reader, n) for n in range(6)]
    gevent.sleep(0.01)
    logs.append(1.0, "INFO", "one line")
    gevent.sleep(0)
    first_turn = len(woke)
    gevent.joinall(readers, timeout=5)
    print(first_turn, sorted(woke))
""")


def test_under_gevent_the_first_slice_wakes_first_and_the_rest_follow():
    result = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 1) == ["2", "[0, 1, 2, 3, 4, 5]\n"]


def test_the_engine_pauses_only_inside_run_and_after_enough_work(engine, monkeypatch):
    slept = []
    monkeypatch.setattr(engine_module.time, "sleep", lambda seconds: slept.append(seconds))
    engine._worked_since = None  # a direct step(now): never sleeps
    engine._let_others_run()
    assert slept == []
    engine._worked_since = time.perf_counter()  # run() just started its tick
    engine._let_others_run()
    assert slept == []
    engine._worked_since = time.perf_counter() - 1.0  # a long tick
    engine._let_others_run()
    assert len(slept) == 1 and time.perf_counter() - engine._worked_since < 0.5


def test_resume_and_step_pause_between_items_when_driven_by_run(engine, clock, db, sample, monkeypatch):
    from tests import factories

    for n in range(3):
        factories.make_deployment(db, image_id=sample["image_id"], status="deploying", name=f"resumed-{n}")
    db.commit()
    slept = []
    monkeypatch.setattr(engine_module.time, "sleep", lambda seconds: slept.append(seconds))
    monkeypatch.setattr(engine, "SHARE_AFTER_SECONDS", 0.0)  # every item is "enough work"
    engine._worked_since = time.perf_counter()  # as run() sets it
    engine.resume(clock())
    assert len(slept) >= 3  # one pause per resumed deployment
    slept.clear()
    engine.step(clock())
    assert len(slept) >= 3  # and per deployment the tick advances
