"""WSGI entry point for production servers: ``gunicorn -c gunicorn.conf.py wsgi:app``
(gunicorn's gevent worker; it monkey-patches before loading this module)."""

from samosval import create_app
from samosval.serving import BodyDeadline, header_timeout

app = create_app({"FORCE_ROOT_PASSWORD_CHANGE": True})  # production: root:root must go at once
app.wsgi_app = BodyDeadline(app.wsgi_app, header_timeout(), int(app.config["MAX_CONTENT_LENGTH"]))
