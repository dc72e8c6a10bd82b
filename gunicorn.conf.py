"""Gunicorn settings for Samosval.

One worker process, many threads: the simulation engine and the in-memory log
and metric buffers live inside one process, so a second worker would run a
second engine and show different logs. Every open live-log stream holds one
thread, so ``threads`` bounds concurrent viewers (plus normal requests).
"""
import os

bind = os.environ.get("SAMOSVAL_BIND", "127.0.0.1:8000")
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("SAMOSVAL_THREADS", "64"))
timeout = 60  # gthread: a busy worker is not killed while streams are open
graceful_timeout = 20
accesslog = None  # Samosval writes its own access lines with request ids
errorlog = "-"


def post_worker_init(worker):
    """On SIGTERM, end live streams first: they would otherwise hold their
    threads until the graceful timeout runs out."""
    import signal

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        _shutdown(worker)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def worker_exit(server, worker):
    _shutdown(worker)


def _shutdown(worker):
    """Stop the engine and end live streams so the database is left clean."""
    app = getattr(worker, "wsgi", None)
    if app is None or not hasattr(app, "extensions"):
        return
    from samosval.simulator.runtime import shutdown
    shutdown(app)
