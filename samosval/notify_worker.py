"""The notification worker (issue 21): its own thread, never the engine's nor a
request's. ``step(now)`` fans new audit events out into the outbox and sends what
is due, a few messages at once, each bounded by ``NOTIFY_TIMEOUT_SECONDS``; tests
call it with a fake clock. Pending messages live in the database, so a restart
sends them after start-up.

The senders speak each channel's format:

- ``webhook``: POST JSON, ``X-Samosval-Event``, ``X-Samosval-Delivery`` (a UUID, the
  same on every retry) and ``X-Samosval-Signature-256: sha256=<HMAC-SHA256 of the
  body under the channel's signing secret>``, as GitHub signs;
- ``slack``: POST ``{"text": ...}`` to the incoming-webhook URL;
- ``telegram``: POST ``<base>/bot<token>/sendMessage`` with ``chat_id`` and ``text``;
- ``email``: one message over SMTP (plain, STARTTLS or SSL; login when a user is set).

Error texts are scrubbed of every secret of the channel before they are stored or
logged.
"""

from __future__ import annotations

import json
import logging
import random
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import click

from . import __version__
from . import db as db_module
from .crypto import Keyring, SealError, app_keyring
from .domain import notifications as notify
from .domain.tokens import github_signature
from .i18n import translator

log = logging.getLogger("samosval.notifications")

USER_AGENT = f"Samosval-Notify/{__version__}"


class SendFailure(Exception):
    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


def _scrub(text: str, secrets: dict) -> str:
    for value in secrets.values():
        if isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _post_json(url: str, body: bytes, headers: dict, timeout: float) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - admin-set http(s) URL
            response.read(65536)
            return response.status
    except urllib.error.HTTPError as exc:
        raise SendFailure(f"HTTP {exc.code} {exc.reason}", exc.code) from None
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            raise SendFailure(f"timed out after {timeout:g} s") from None
        raise SendFailure(f"connection failed: {reason}") from None


def send_message(message, secrets: dict, timeout: float) -> int | None:
    """Send one outbox message; returns the HTTP status (None for email). Raises
    :class:`SendFailure`."""
    kind = message["kind"]
    settings = json.loads(message["settings"])
    payload = json.loads(message["payload"])
    text = f"[Samosval] {payload.get('text')}"
    if kind == "webhook":
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return _post_json(
            secrets["url"],
            body,
            {
                "X-Samosval-Event": message["event"],
                "X-Samosval-Delivery": message["delivery_uuid"],
                "X-Samosval-Signature-256": github_signature(secrets["signing_secret"], body),
            },
            timeout,
        )
    if kind == "slack":
        body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
        return _post_json(secrets["url"], body, {}, timeout)
    if kind == "telegram":
        base = (settings.get("base_url") or notify.TELEGRAM_DEFAULT_BASE).rstrip("/")
        chat = message["recipient"] or settings.get("chat_id")
        body = json.dumps(
            {"chat_id": chat, "text": text, "disable_web_page_preview": True}, ensure_ascii=False
        ).encode("utf-8")
        return _post_json(f"{base}/bot{secrets['bot_token']}/sendMessage", body, {}, timeout)
    if kind == "email":
        _send_email(settings, secrets, message["recipient"], payload, timeout)
        return None
    raise SendFailure(f"unknown channel kind {kind}")


def _send_email(settings: dict, secrets: dict, recipient: str, payload: dict, timeout: float) -> None:
    mail = EmailMessage()
    mail["From"] = settings["from_addr"]
    mail["To"] = recipient
    mail["Subject"] = f"[Samosval] {payload.get('text')}"[:200]
    mail["Message-ID"] = f"<{payload.get('delivery_id')}@samosval>"
    mail.set_content(
        f"{payload.get('text')}\n\nEvent: {payload.get('event')}\nAt: {payload.get('occurred_at')}\n"
        + (f"Page: {payload['url']}\n" if payload.get("url") else "")
    )
    security = settings.get("security") or "none"
    host, port = settings["host"], int(settings.get("port") or 25)
    try:
        if security == "ssl":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.get("username"):
                client.login(settings["username"], secrets.get("password") or "")
            client.send_message(mail)
    except TimeoutError:
        raise SendFailure(f"timed out after {timeout:g} s") from None
    except smtplib.SMTPResponseException as exc:
        raise SendFailure(f"SMTP {exc.smtp_code} {exc.smtp_error!r}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailure(f"SMTP failed: {exc}") from None


class NotificationWorker:
    """Fan-out and delivery, one step at a time."""

    TICK_SECONDS = 1.0
    BATCH = 20
    CONCURRENCY = 4

    def __init__(
        self,
        db_path: str,
        keyring: Keyring,
        clock=time.time,
        rng=None,
        timeout: float = 10.0,
        sender=send_message,
        translate=None,
    ):
        self.db_path = db_path
        self.keyring = keyring
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.timeout = timeout
        self.sender = sender
        # (locale, message, params) -> text: each recipient reads their language.
        self.translate = translate
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one step ----------------------------------------------------------------
    def step(self, now: float) -> dict:
        """Fan out new events, then send every message due at ``now`` (a batch at a
        time). Returns counts."""
        counts = {"queued": 0, "sent": 0, "failed": 0, "dead": 0}
        db = db_module.connect(self.db_path)
        try:
            counts["queued"] = notify.fan_out(db, now, translate=self.translate)
            messages = notify.claim_due(db, now, self.BATCH)
            if not messages:
                return counts
            with ThreadPoolExecutor(max_workers=min(self.CONCURRENCY, len(messages))) as pool:
                outcomes = list(pool.map(self._attempt, messages))
            for message, (ok, status, error, duration) in zip(messages, outcomes):
                result = notify.record_attempt(
                    db,
                    message,
                    ok=ok,
                    http_status=status,
                    error=error,
                    duration_ms=duration,
                    now=now,
                    rng=self.rng,
                )
                counts["sent" if ok else ("dead" if result == "dead" else "failed")] += 1
        finally:
            db.close()
        return counts

    def _attempt(self, message) -> tuple[bool, int | None, str | None, float]:
        started = time.perf_counter()
        secrets: dict = {}
        try:
            secrets = json.loads(self.keyring.open(message["sealed_settings"]))
            status = self.sender(message, secrets, self.timeout)
            return True, status, None, (time.perf_counter() - started) * 1000
        except SealError:
            error = "the channel's secrets cannot be decrypted (encryption key changed?)"
            status = None
        except SendFailure as exc:
            error, status = _scrub(str(exc), secrets), exc.http_status
        except Exception as exc:  # a sender bug must not kill the worker
            error, status = _scrub(f"{type(exc).__name__}: {exc}", secrets), None
        log.warning(
            "notification %s (%s) to channel %s failed, attempt %s: %s",
            message["id"],
            message["event"],
            message["channel_name"],
            message["attempts"] + 1,
            error,
        )
        return False, status, error, (time.perf_counter() - started) * 1000

    # -- the thread --------------------------------------------------------------
    def wake(self) -> None:
        """Something was queued: step now instead of at the next tick."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="NotificationWorker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(self.clock())
            except Exception:
                log.exception("notification step failed")
            self._wake.wait(self.TICK_SECONDS)
            self._wake.clear()


_process_lock = threading.Lock()
_process_worker: NotificationWorker | None = None


def build_worker(app, clock=None, rng=None, sender=send_message) -> NotificationWorker:
    return NotificationWorker(
        app.config["DATABASE"],
        app_keyring(app.config),
        clock=clock or time.time,
        rng=rng,
        timeout=float(app.config["NOTIFY_TIMEOUT_SECONDS"]),
        sender=sender,
        translate=translator(app),
    )


def wake() -> None:
    """Nudge this process's worker (a test message was queued)."""
    worker = _process_worker
    if worker is not None:
        worker.wake()


def stop_process_worker(timeout: float = 2.0) -> None:
    """At shutdown: stop this process's worker (a send still in flight is tried
    again after the next start, once its claim lapses)."""
    global _process_worker
    with _process_lock:
        worker, _process_worker = _process_worker, None
    if worker is not None:
        worker.stop(timeout)


def init_app(app) -> None:
    """One worker per process, started with the engine (not in CLI commands)."""
    global _process_worker
    worker = build_worker(app)
    app.extensions["samosval_notify"] = worker
    if app.config["SIMULATOR_AUTOSTART"] and click.get_current_context(silent=True) is None:
        with _process_lock:
            if _process_worker is None or not _process_worker.is_alive():
                worker.start()
                _process_worker = worker
