"""Run Samosval on a laptop: ``python app.py`` (see README for options).

Serves on gevent's event loop: an open live-log stream or a slow client costs a
greenlet, not a thread. Monkey-patching comes first, before anything else is
imported, so that sockets, locks, ``threading`` (the simulation engine runs as a
greenlet) and ``time.sleep`` all cooperate with the loop.
"""

import gc

gc.disable()  # start-up makes long-lived objects only; tune_gc() freezes them and turns it on

import importlib.metadata  # noqa: E402

from gevent import monkey  # noqa: E402


def patch_all() -> None:
    """``monkey.patch_all()``, reading the installed packages' entry points once.

    gevent announces each of its ~25 patches to plugins it looks up with
    ``importlib.metadata.entry_points(group=...)``, which reads the metadata of every
    installed distribution on each call (~2.7 ms for ~140 of them: ~65 ms a start).
    Nothing is installed while patching, so one reading answers every look-up."""
    read_each_time = importlib.metadata.entry_points
    everything = read_each_time()
    importlib.metadata.entry_points = lambda **params: everything.select(**params) if params else everything
    try:
        monkey.patch_all()
    finally:
        importlib.metadata.entry_points = read_each_time


patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from samosval import create_app  # noqa: E402
from samosval.auth import root_login_hint  # noqa: E402
from samosval.security import is_loopback_host  # noqa: E402
from samosval.serving import make_server, raise_fd_limit, tune_gc  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Samosval deployment portal")
    parser.add_argument("--host", default=os.environ.get("SAMOSVAL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAMOSVAL_PORT", "5000")))
    parser.add_argument(
        "--demo",
        action="store_true",
        default=os.environ.get("SAMOSVAL_DEMO", "").lower() in {"1", "true", "yes"},
        help="fill a fresh database with demo users, requests and deployments",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    settings = {"DEMO": args.demo}
    if not is_loopback_host(args.host):  # reachable from other machines: no root:root
        settings["FORCE_ROOT_PASSWORD_CHANGE"] = True
    app = create_app(settings)
    from samosval.simulator.runtime import shutdown

    if args.demo:
        from samosval.demo import DemoRefused, seed_demo

        try:
            printed = seed_demo(app)
        except DemoRefused as refused:  # never serve a database demo mode did not fill
            print("\n".join(refused.lines), file=sys.stderr, flush=True)
            shutdown(app)
            return 2
        for line in printed:
            print(line)
    server = make_server(app, args.host, args.port)

    def stop():
        # SIGTERM (systemd, docker stop, CI) ends the server like Ctrl+C does: no new
        # connections, live streams end, the engine stops, then the server returns.
        server.close()
        shutdown(app)
        server.stop(timeout=5)

    gevent.signal_handler(signal.SIGTERM, stop)
    tune_gc()
    server.start()
    print(f"Samosval is running on http://{args.host}:{args.port}/", flush=True)
    if hint := root_login_hint(app):
        print(hint, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(app)


if __name__ == "__main__":
    sys.exit(main())
