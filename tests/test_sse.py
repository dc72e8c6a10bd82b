"""The live log stream: the pure encoder, the generator, and the SSE route."""

from __future__ import annotations

import json
import threading

import pytest

from samosval import sse
from samosval.auth import User
from samosval.domain import deployments as deployment_domain
from samosval.domain import users as user_domain
from samosval.simulator.state import LogStream

T0 = 1_800_000_000.0


# --- format_event and friends ---------------------------------------------------------


def test_it_formats_an_event_with_every_field():
    text = sse.format_event({"a": 1, "b": "é"}, event="status", id=7, retry=1500)
    assert text == 'event: status\nid: 7\nretry: 1500\ndata: {"a":1,"b":"é"}\n\n'


def test_it_formats_plain_data_only():
    assert sse.format_event("hello") == "data: hello\n\n"


def test_it_splits_multiline_data_into_several_fields():
    assert sse.format_event("one\ntwo\r\nthree") == "data: one\ndata: two\ndata: three\n\n"


def test_it_formats_a_retry_hint_alone():
    assert sse.format_event(retry=3000) == "retry: 3000\n\n"


@pytest.mark.parametrize("kwargs", [{"event": "a\nb"}, {"id": "1\n2"}])
def test_it_refuses_line_breaks_in_fields(kwargs):
    with pytest.raises(ValueError):
        sse.format_event("x", **kwargs)


def test_it_formats_a_comment():
    assert sse.format_comment("ping") == ": ping\n\n"


def test_it_parses_what_it_formats():
    text = (
        sse.format_event(retry=100)
        + sse.format_event({"x": 1}, event="status")
        + sse.format_event("a\nb", id=3)
        + sse.format_comment("ping")
    )
    events = sse.parse_events(text)
    assert events == [
        {"retry": "100"},
        {"event": "status", "data": '{"x":1}'},
        {"id": "3", "data": "a\nb"},
        {"comment": "ping"},
    ]


@pytest.mark.parametrize(
    "header, query, expected",
    [
        (None, None, None),
        ("12", None, (None, 12)),
        (None, "12", (None, 12)),
        ("15", "12", (None, 15)),  # the browser's header is newer than the URL's ?after=
        ("a1b2-15", "12", ("a1b2", 15)),  # <epoch>-<seq>, as the stream sends them
        (None, "a1b2-7", ("a1b2", 7)),
        ("junk", "12", (None, 12)),
        ("-3", None, None),
        ("a b-3", None, None),
        ("a1-x", None, None),
        ("", "", None),
        (" 4 ", None, (None, 4)),
    ],
)
def test_it_reads_where_the_client_stopped(header, query, expected):
    assert sse.parse_after(header, query) == expected


# --- the generator, without Flask --------------------------------------------------------


def filled(count: int, epoch: str = "") -> LogStream:
    logs = LogStream(epoch=epoch)
    for n in range(count):
        logs.append(T0 + n, "INFO", f"line {n + 1}")
    logs.set_status("running")
    return logs


def make_events(logs, after=None, heartbeat=0.01, payload=None, lost=None):
    payload = payload if payload is not None else {"status": "running", "actions": []}
    if isinstance(after, int):
        after = (None, after)
    return sse.log_events(
        logs,
        after=after,
        heartbeat=heartbeat,
        retry_ms=2000,
        status_payload=lambda: payload() if callable(payload) else payload,
        check_access=lost or (lambda: None),
    )


def take(events, until, limit=50) -> list[dict]:
    """Parsed events until ``until(collected)`` is true (pings included)."""
    found = []
    for _ in range(limit):
        found.extend(sse.parse_events(next(events).decode()))
        if until(found):
            return found
    raise AssertionError(f"condition not met; got {found[-5:]}")


def line_ids(events) -> list[int]:
    """Sequence numbers of the line events (ids are ``<epoch>-<seq>``)."""
    return [int(e["id"].rpartition("-")[2]) for e in events if "id" in e]


def epochs(events) -> set[str]:
    return {e["id"].rpartition("-")[0] for e in events if "id" in e}


def test_it_starts_with_retry_status_and_the_last_200_lines():
    logs = filled(300)
    events = make_events(logs)
    found = take(events, lambda f: len(line_ids(f)) >= 200)
    assert found[0] == {"retry": "2000"}
    assert found[1]["event"] == "status"
    assert line_ids(found) == list(range(101, 301))
    assert json.loads(found[-1]["data"]) == {"seq": 300, "ts": T0 + 299, "level": "INFO", "text": "line 300"}


def test_it_resumes_exactly_after_the_given_id():
    logs = filled(50)
    events = make_events(logs, after=42)
    found = take(events, lambda f: len(line_ids(f)) >= 8)
    assert line_ids(found) == list(range(43, 51))
    logs.append(T0 + 60, "WARN", "later")
    found = take(events, lambda f: line_ids(f))
    assert line_ids(found) == [51]


def test_it_says_how_many_lines_fell_off_the_ring():
    logs = filled(1100)  # the ring keeps 101..1100
    events = make_events(logs, after=50)
    found = take(events, lambda f: 1100 in line_ids(f))
    missed = [e for e in found if e.get("event") == "missed"]
    assert [json.loads(e["data"])["missed"] for e in missed] == [50]
    assert line_ids(found) == list(range(101, 1101))
    assert found.index(missed[0]) < next(i for i, e in enumerate(found) if "id" in e)


def test_it_starts_afresh_when_the_client_counted_an_earlier_server_run():
    logs = filled(10)
    events = make_events(logs, after=5000)
    found = take(events, lambda f: 10 in line_ids(f))
    assert found[1]["event"] == "reset"
    assert line_ids(found) == list(range(1, 11))


def test_ids_name_the_server_run():
    logs = filled(3, epoch="run2")
    found = take(make_events(logs), lambda f: 3 in line_ids(f))
    assert [e["id"] for e in found if "id" in e] == ["run2-1", "run2-2", "run2-3"]


def test_an_id_of_another_run_gets_reset_then_the_whole_buffer():
    """A young stream of the previous run stopped at line 5; this run has 300 lines.
    Without the epoch it would resume at 6 and silently skip this run's first lines."""
    logs = filled(300, epoch="run2")
    found = take(make_events(logs, after=("run1", 5)), lambda f: 300 in line_ids(f))
    assert found[1]["event"] == "reset"
    assert line_ids(found) == list(range(1, 301))  # not just the last 200
    assert epochs(found) == {"run2"}


def test_an_id_of_this_run_resumes_without_reset():
    logs = filled(10, epoch="run2")
    found = take(make_events(logs, after=("run2", 5)), lambda f: 10 in line_ids(f))
    assert not [e for e in found if e.get("event") == "reset"]
    assert line_ids(found) == [6, 7, 8, 9, 10]


def test_viewers_at_the_same_place_share_one_encoding():
    logs = filled(5, epoch="e")
    calls = []

    def encode(lines):
        calls.append([line.seq for line in lines])
        return sse.encode_lines(lines, "e")

    first = logs.chunk_after(2, 500, encode)
    second = logs.chunk_after(2, 500, encode)
    assert first == second and first[1:] == (5, 0)
    assert second[0] is first[0]
    assert calls == [[3, 4, 5]]
    logs.append(T0 + 10, "INFO", "late")  # a late reader gets the cached range, then the rest
    assert logs.chunk_after(2, 500, encode)[1] == 5
    assert logs.chunk_after(5, 500, encode)[1] == 6
    assert calls == [[3, 4, 5], [6]]


def test_it_sends_status_changes_as_their_own_event():
    logs = filled(3)
    current = {"status": "running", "actions": ["stop"]}
    events = make_events(logs, after=3, payload=lambda: dict(current))
    take(events, lambda f: any(e.get("event") == "status" for e in f))
    current.update(status="stopped", actions=["start"])
    logs.set_status("stopped")
    found = take(events, lambda f: any(e.get("event") == "status" for e in f))
    status = [json.loads(e["data"]) for e in found if e.get("event") == "status"]
    assert status == [{"status": "stopped", "actions": ["start"]}]


def test_it_pings_when_nothing_happens():
    events = make_events(filled(1), after=1, heartbeat=0.01)
    found = take(events, lambda f: any(e.get("comment") == "ping" for e in f))
    assert not line_ids(found)


def test_it_ends_with_an_end_event_when_the_deployment_is_gone():
    logs = filled(2)
    exists = {"yes": True}
    events = make_events(logs, after=2, payload=lambda: {"status": "running"} if exists["yes"] else None)
    take(events, lambda f: any(e.get("event") == "status" for e in f))
    exists["yes"] = False
    logs.close()
    found = take(events, lambda f: any(e.get("event") == "end" for e in f))
    assert json.loads(found[-1]["data"]) == {"reason": "deleted"}
    with pytest.raises(StopIteration):
        next(events)


def test_it_ends_quietly_when_the_server_stops_so_browsers_reconnect():
    logs = filled(2)
    events = make_events(logs, after=2)
    take(events, lambda f: any(e.get("event") == "status" for e in f))
    logs.close()
    with pytest.raises(StopIteration):
        next(events)


def test_it_ends_with_the_reason_when_access_is_lost_even_while_sleeping():
    logs = filled(1)
    reason = {"now": None}
    events = make_events(logs, after=1, heartbeat=30, lost=lambda: reason["now"])
    take(events, lambda f: any(e.get("event") == "status" for e in f))

    def revoke():
        reason["now"] = "blocked"
        logs.wake()

    threading.Timer(0.1, revoke).start()
    found = take(events, lambda f: any(e.get("event") == "end" for e in f))
    assert json.loads(found[-1]["data"]) == {"reason": "blocked"}
    with pytest.raises(StopIteration):
        next(events)


def test_it_rechecks_access_at_every_heartbeat_and_status_change():
    logs = filled(1)
    checks = []
    events = make_events(logs, after=1, heartbeat=0.01, lost=lambda: checks.append(1))
    take(events, lambda f: sum(e.get("comment") == "ping" for e in f) >= 2)
    assert len(checks) >= 2
    before = len(checks)
    logs.set_status("stopped")
    take(events, lambda f: any(e.get("event") == "status" for e in f))
    assert len(checks) > before


def test_it_releases_once_even_if_never_iterated():
    released = []
    stream = sse.EventStream(make_events(filled(3)), lambda: released.append(1))
    stream.close()
    stream.close()
    assert released == [1]


# --- the route --------------------------------------------------------------------------


class Stream:
    """An open SSE response from the Flask test client, read chunk by chunk."""

    def __init__(self, response):
        self.response = response
        self.chunks = iter(response.response)
        self.events: list[dict] = []

    def read_until(self, until, limit=400) -> list[dict]:
        for _ in range(limit):
            self.events.extend(sse.parse_events(next(self.chunks).decode()))
            if until(self.events):
                return self.events
        raise AssertionError(f"condition not met; last events {self.events[-5:]}")

    def statuses(self) -> list[dict]:
        return [json.loads(e["data"]) for e in self.events if e.get("event") == "status"]

    def ended(self) -> bool:
        try:
            self.events.extend(sse.parse_events(next(self.chunks).decode()))
        except StopIteration:
            return True
        return False

    def close(self):
        self.response.close()


@pytest.fixture
def live(app, auth, sample):
    """Open streams as a persona; every one is closed at the end of the test."""
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.02
    opened = []
    state = app.extensions["samosval"].state

    def open_stream(username="oleg", deployment_id=None, headers=None, query=""):
        deployment_id = deployment_id or sample["deployment_id"]
        response = auth.client_for(username).get(
            f"/api/deployments/{deployment_id}/logs/stream{query}", headers=headers or {}, buffered=False
        )
        if response.status_code != 200:
            return response
        stream = Stream(response)
        opened.append(stream)
        return stream

    open_stream.state = state
    open_stream.logs = state.runtime(sample["deployment_id"]).logs
    yield open_stream
    for stream in opened:
        stream.close()


def as_user(db, user_id):
    return User(user_domain.get_user(db, user_id))


def append(logs, count, start=0):
    for n in range(start, start + count):
        logs.append(T0 + n, "INFO", f"line {n + 1}")


def test_it_sends_the_right_headers(live):
    stream = live()
    headers = stream.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in headers
    assert "Content-Length" not in headers
    events = stream.read_until(lambda e: len(e) >= 1)
    assert events[0] == {"retry": "3000"}


def test_it_sends_the_last_200_lines_first(live):
    append(live.logs, 250)
    stream = live()
    events = stream.read_until(lambda e: 250 in line_ids(e))
    assert line_ids(events) == list(range(51, 251))


def test_it_resumes_from_last_event_id_without_duplicates_or_gaps(live):
    append(live.logs, 30)
    first = live()
    events = first.read_until(lambda e: 30 in line_ids(e))
    seen = line_ids(events)[:20]  # the client got up to 20, then its connection dropped
    first.close()
    append(live.logs, 10, start=30)
    second = live(headers={"Last-Event-ID": str(seen[-1])})
    events = second.read_until(lambda e: 40 in line_ids(e))
    assert seen + line_ids(events) == list(range(1, 41))


def test_it_accepts_after_as_a_query_parameter(live):
    append(live.logs, 30)
    stream = live(query="?after=25")
    assert line_ids(stream.read_until(lambda e: 30 in line_ids(e))) == [26, 27, 28, 29, 30]


def test_it_prefers_the_last_event_id_header_to_the_query(live):
    append(live.logs, 30)
    stream = live(query="?after=5", headers={"Last-Event-ID": "27"})
    assert line_ids(stream.read_until(lambda e: 30 in line_ids(e))) == [28, 29, 30]


def test_it_sends_a_missed_event_when_lines_fell_off_the_ring(live):
    append(live.logs, 1100)
    stream = live(headers={"Last-Event-ID": "50"})
    events = stream.read_until(lambda e: 1100 in line_ids(e))
    missed = [json.loads(e["data"]) for e in events if e.get("event") == "missed"]
    assert missed == [{"missed": 50, "after": 50}]
    assert line_ids(events) == list(range(101, 1101))


def test_it_streams_lines_appended_while_connected(live):
    stream = live()
    stream.read_until(lambda e: any(x.get("event") == "status" for x in e))
    append(live.logs, 3)
    events = stream.read_until(lambda e: 3 in line_ids(e))
    assert line_ids(events) == [1, 2, 3]


def test_it_sends_status_events_with_the_viewers_own_actions(live, sample, users, db):
    stream = live("dana")
    events = stream.read_until(lambda e: stream.statuses())
    assert stream.statuses()[0]["actions"] == ["stop", "restart"]
    row = deployment_domain.get_deployment(db, sample["deployment_id"])
    deployment_domain.perform_action(db, live.state, row, as_user(db, users["oleg"]), "stop", T0)
    events = stream.read_until(lambda e: len(stream.statuses()) >= 2)
    status = stream.statuses()[-1]
    assert status["status"] == "stopped"
    assert status["stopped_by_operator"] is True
    assert status["actions"] == []  # dana may not start what an operator stopped
    assert any("Deployment stopped by oleg" in json.loads(e["data"])["text"] for e in events if "id" in e)


@pytest.mark.parametrize(
    "username, status",
    [
        ("root", 200),
        ("alice", 200),
        ("oleg", 200),
        ("dana", 200),
        ("carl", 200),
        ("colin", 200),
        ("sam", 404),
        ("joanna", 404),
    ],
)
def test_it_applies_the_deployment_page_visibility(live, username, status):
    result = live(username)
    if status == 200:
        assert isinstance(result, Stream)
    else:
        assert result.status_code == status
        assert result.is_json and "error" in result.get_json()


def test_it_answers_anonymous_callers_with_401_json(client, sample):
    response = client.get(f"/api/deployments/{sample['deployment_id']}/logs/stream")
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_it_answers_404_for_a_deployment_that_does_not_exist(live):
    response = live("oleg", deployment_id=99999)
    assert response.status_code == 404


def test_it_caps_open_streams_per_user_with_a_clear_429(app, live):
    app.config["SSE_MAX_STREAMS_PER_USER"] = 2
    first, second = live("dana"), live("dana")
    third = live("dana")
    assert third.status_code == 429
    assert "error" in third.get_json()
    assert isinstance(live("oleg"), Stream)  # the cap is per user
    first.close()
    assert isinstance(live("dana"), Stream)
    second.close()


def test_it_releases_everything_when_the_client_goes_away(live):
    append(live.logs, 5)
    streams = [live("oleg"), live("dana"), live("colin")]
    streams[0].read_until(lambda e: 5 in line_ids(e))
    assert live.logs.subscribers == 3
    assert live.state.open_stream_count() == 3
    for stream in streams:  # one read, two never read at all
        stream.close()
    assert live.logs.subscribers == 0
    assert live.state.open_stream_count() == 0


def test_it_ends_the_stream_when_the_deployment_is_deleted(live, sample, users, db):
    stream = live("dana")
    stream.read_until(lambda e: stream.statuses())
    row = deployment_domain.get_deployment(db, sample["deployment_id"])
    deployment_domain.perform_action(db, live.state, row, as_user(db, users["oleg"]), "delete", T0)
    events = stream.read_until(lambda e: any(x.get("event") == "end" for x in e))
    assert json.loads(events[-1]["data"]) == {"reason": "deleted"}
    assert stream.ended()
    stream.close()
    assert live.state.open_stream_count() == 0


def test_it_ends_a_blocked_users_stream_at_once(app, live, users, db):
    app.config["SSE_HEARTBEAT_SECONDS"] = 30  # so only the wake-up can end it quickly
    stream = live("dana")
    stream.read_until(lambda e: stream.statuses())
    user_domain.block_user(db, users["dana"], actor=as_user(db, users["root"]), now=T0)
    threading.Timer(0.1, live.state.revoke_user, [users["dana"]]).start()
    events = stream.read_until(lambda e: any(x.get("event") == "end" for x in e))
    assert json.loads(events[-1]["data"]) == {"reason": "blocked"}
    assert stream.ended()
    stream.close()
    assert live.logs.subscribers == 0


# What each cause of lost access leaves in the database (the domain commands that
# do it are tested in their own modules); the stream notices at its next heartbeat.
LOST_ACCESS = {
    "blocked": (
        "dana",
        "UPDATE users SET is_active = 0, session_version = session_version + 1 WHERE username = 'dana'",
    ),
    "role_changed": (
        "dana",
        "UPDATE users SET role = 'operator', session_version = session_version + 1 WHERE username = 'dana'",
    ),
    "password_changed": (
        "dana",
        "UPDATE users SET password_hash = 'x', session_version = session_version + 1 WHERE username = 'dana'",
    ),
    "logged_out": ("dana", "UPDATE users SET session_version = session_version + 1 WHERE username = 'dana'"),
    # removed as collaborator
    "no_access": ("colin", "DELETE FROM request_collaborators WHERE username = 'colin'"),
}


@pytest.mark.parametrize("reason", sorted(LOST_ACCESS))
def test_it_ends_with_the_reason_when_the_viewer_loses_access(live, db, reason):
    username, sql = LOST_ACCESS[reason]
    stream = live(username)
    stream.read_until(lambda e: stream.statuses())
    db.execute(sql)
    if reason == "no_access":
        db.execute("UPDATE image_requests SET collaborators = ''")
    events = stream.read_until(lambda e: any(x.get("event") == "end" for x in e), limit=2000)
    assert json.loads(events[-1]["data"]) == {"reason": reason}
    assert stream.ended()


def test_it_ends_when_the_request_is_hidden_from_its_viewer(live, db, users):
    """dana owned the request; it was handed to someone else: she no longer sees it."""
    stream = live("dana")
    stream.read_until(lambda e: stream.statuses())
    db.execute("UPDATE image_requests SET owner_id = ?", (users["sam"],))
    events = stream.read_until(lambda e: any(x.get("event") == "end" for x in e), limit=2000)
    assert json.loads(events[-1]["data"]) == {"reason": "no_access"}


def test_others_keep_watching_when_one_viewer_loses_access(live, db):
    kept, lost = live("oleg"), live("colin")
    for stream in (kept, lost):
        stream.read_until(lambda e, s=stream: s.statuses())
    db.execute("DELETE FROM request_collaborators WHERE username = 'colin'")
    db.execute("UPDATE image_requests SET collaborators = ''")
    lost.read_until(lambda e: any(x.get("event") == "end" for x in e), limit=2000)
    append(live.logs, 2)
    events = kept.read_until(lambda e: 2 in line_ids(e))
    assert not [e for e in events if e.get("event") == "end"]


def test_ids_carry_the_epoch_of_this_server_run(live):
    append(live.logs, 3)
    events = live().read_until(lambda e: 3 in line_ids(e))
    # The process's epoch in memory; with Redis, the stream's (the same on every process).
    assert epochs(events) == {live.logs.epoch} and live.logs.epoch


def test_a_last_event_id_of_another_run_gets_reset_and_the_buffer(live):
    append(live.logs, 250)
    stream = live(headers={"Last-Event-ID": "0ldrun-5"})
    events = stream.read_until(lambda e: 250 in line_ids(e))
    assert [e.get("event") for e in events[:2]] == [None, "reset"]  # retry hint, then reset
    assert line_ids(events) == list(range(1, 251))


def test_the_global_cap_answers_503_with_retry_after(app, live):
    app.config["SSE_MAX_STREAMS"] = 2
    first, second = live("dana"), live("oleg")
    third = live("colin")
    assert third.status_code == 503
    assert third.headers["Retry-After"] and "error" in third.get_json()
    first.close()
    assert isinstance(live("colin"), Stream)
    second.close()
