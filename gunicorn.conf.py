"""Gunicorn settings for Samosval: ``gunicorn -c gunicorn.conf.py wsgi:app``.

One worker process on gevent's event loop. The simulation engine and the
in-memory log and metric buffers live inside one process, so a second worker
would run a second engine and show different logs. Every open live-log stream
and every slow client costs a greenlet, not a thread; ``worker_connections``
bounds them all (streams, pages, keep-alives) and stays above
``SAMOSVAL_SSE_MAX_STREAMS`` so pages are served when every stream slot is taken.
"""

import importlib.util
import math
import os
from pathlib import Path


def _load_serving():
    """samosval/serving.py by path: importing the ``samosval`` package here would load
    Flask and its locks in the arbiter, before the worker monkey-patches, and the
    worker would inherit unpatched modules. serving.py imports only the stdlib."""
    path = Path(__file__).resolve().parent / "samosval" / "serving.py"
    spec = importlib.util.spec_from_file_location("_samosval_serving", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serving = _load_serving()

bind = os.environ.get("SAMOSVAL_BIND", "127.0.0.1:8000")
workers = 1
worker_class = "gevent"
worker_connections = serving.worker_connections()
# The gevent worker reads every request's headers, the first included, within
# ``keepalive`` seconds, and closes an idle keep-alive connection after it: this is
# the header timeout. (Request bodies get the same deadline from wsgi.py.)
keepalive = max(1, math.ceil(serving.header_timeout()))
timeout = 60  # the worker's loop must answer the arbiter at least this often
graceful_timeout = 20
accesslog = None  # Samosval writes its own access lines with request ids
errorlog = "-"

serving.raise_fd_limit()  # inherited by the worker


def post_worker_init(worker):
    """On SIGTERM, end live streams first: they would otherwise hold the worker
    until the graceful timeout runs out. Then tune the garbage collector for many
    long-lived streams (samosval/serving.py)."""
    import signal

    import gevent

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        # A signal handler must not block the loop: shut down in a greenlet.
        gevent.spawn(_shutdown, worker)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)

    from samosval.serving import tune_gc  # the app is loaded: safe to import now

    tune_gc()


def worker_exit(server, worker):
    _shutdown(worker)


def _shutdown(worker):
    """Stop the engine and end live streams so the database is left clean."""
    app = getattr(worker, "wsgi", None)
    if app is None or not hasattr(app, "extensions"):
        return
    from samosval.simulator.runtime import shutdown

    shutdown(app)
