"""Run Samosval on a laptop: ``python app.py`` (see README for options)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from werkzeug.serving import WSGIRequestHandler

from samosval import create_app


class BufferedRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with a buffered socket writer. Werkzeug writes each chunk of
    a streamed response in four small writes and then flushes; buffered, that is one
    send per chunk, which matters when hundreds of live log streams wake at once."""

    wbufsize = -1

    def finish(self):
        try:
            super().finish()  # flushes what is buffered
        except (ConnectionError, TimeoutError):
            pass  # the client left: nothing is left to deliver, and nothing to report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Samosval deployment portal")
    parser.add_argument("--host", default=os.environ.get("SAMOSVAL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAMOSVAL_PORT", "5000")))
    parser.add_argument("--demo", action="store_true",
                        default=os.environ.get("SAMOSVAL_DEMO", "").lower() in {"1", "true", "yes"},
                        help="fill a fresh database with demo users, requests and deployments")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # Samosval logs its own access lines (with request ids); keep werkzeug's quiet.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app({"DEMO": args.demo})
    if args.demo:
        from samosval.demo import seed_demo
        printed = seed_demo(app)
        for line in printed:
            print(line)
    print(f"Samosval is running on http://{args.host}:{args.port}/", flush=True)
    if app.config["ROOT_PASSWORD"] == "root":
        print("First login: root / root (you will be asked to change the password).", flush=True)
    # SIGTERM (systemd, docker stop, CI) ends the server like Ctrl+C does, so the
    # engine stops and streams close before the process exits.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    from samosval.simulator.runtime import shutdown
    try:
        # No reloader: it would start a second process and a second engine.
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False, debug=False,
                request_handler=BufferedRequestHandler)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(app)


if __name__ == "__main__":
    sys.exit(main())
