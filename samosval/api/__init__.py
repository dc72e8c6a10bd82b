"""The documented JSON API (issue 22) under ``/api/v1``, its OpenAPI 3.1 document at
``/api/openapi.json`` and a docs page at ``/api/docs``.

flask-smorest (apispec + marshmallow) builds the document from the code: the same
schemas parse the input, shape the answer and are what the document says, so the
two cannot drift apart (tests/test_api_openapi.py also compares the document with
``app.url_map``). Authentication is the portal's own: a personal access token
(``Authorization: Bearer``, auth.py) or the session cookie with its CSRF token.
"""

from __future__ import annotations

import threading

from flask import Blueprint as FlaskBlueprint
from flask import current_app, render_template
from flask_smorest import Api as SmorestApi

from .. import __version__, permissions
from .common import PREFIX, ErrorSchema
from .resources import BLUEPRINTS

OPENAPI_PATH = "/api/openapi.json"
DOC_METHODS = ("get", "put", "post", "patch", "delete")

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal access token from /account/tokens. Its scopes bound "
        "what it may do (x-required-scope of each operation), and its "
        "owner's role bounds it too.",
    },
    "cookieAuth": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The browser session; unsafe methods then need the X-CSRFToken header.",
    },
}


class Api(SmorestApi):
    """flask-smorest's Api, with the document built on first use: describing the
    ~70 operations (deep copies, schema resolution) cost ~40 ms of every start-up,
    for a document only /api/openapi.json and /api/docs read."""

    ERROR_SCHEMA = ErrorSchema

    def __init__(self, *args, **kwargs):
        self._spec = None
        self._undocumented: list[tuple] = []
        self._documenting = threading.Lock()
        super().__init__(*args, **kwargs)

    @property
    def spec(self):
        """The document, every registered blueprint described in it by now (the
        pages, the ``flask openapi`` commands and flask-smorest all read it here)."""
        if self._undocumented:
            self._document_all()
        return self._spec

    @spec.setter
    def spec(self, value) -> None:
        self._spec = value

    def register_blueprint(self, blp, *, parameters=None, **options):
        """Routes now, as flask-smorest does; their description on first use of ``spec``."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def _document_all(self) -> None:
        """What flask-smorest's ``register_blueprint`` does after registering the
        routes, for each blueprint not described yet, in registration order."""
        with self._documenting:  # a second reader waits for the whole document
            while self._undocumented:
                blp, name, parameters = self._undocumented[0]
                blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
                self._spec.tag({"name": name, "description": blp.description})
                del self._undocumented[0]

    def _register_error_handlers(self):
        """None: errors keep the portal's handlers (one shape under /api, web.py),
        and the pages keep their HTML error pages."""

    def document(self) -> dict:
        """The OpenAPI document, each operation marked with the token scope it needs."""
        doc = self.spec.to_dict()
        for rule in current_app.url_map.iter_rules():
            if not rule.rule.startswith(PREFIX + "/"):
                continue
            view = current_app.view_functions[rule.endpoint]
            path = doc["paths"].get(openapi_path(rule.rule))
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                operation = (path or {}).get(method.lower())
                if operation is not None:
                    operation["x-required-scope"] = permissions.required_scope(
                        method, getattr(view, "required_scope", None)
                    )
        return doc

    def _openapi_json(self):
        return current_app.response_class(
            current_app.json.dumps(self.document()), mimetype="application/json"
        )


def openapi_path(rule: str) -> str:
    """``/api/v1/requests/<int:request_id>`` -> ``/api/v1/requests/{request_id}``."""
    out, rest = [], rule
    while "<" in rest:
        head, _sep, tail = rest.partition("<")
        name, _sep, rest = tail.partition(">")
        out += [head, "{" + name.split(":")[-1] + "}"]
    return "".join(out) + rest


docs_bp = FlaskBlueprint("api_docs", __name__)


@docs_bp.route("/api/docs")
def docs():
    """Every operation of the document, grouped by tag: rendered from the document
    itself (no script, no CDN)."""
    doc = current_app.extensions["samosval_api"].document()
    groups: dict[str, list] = {tag["name"]: [] for tag in doc.get("tags", [])}
    for path, item in doc["paths"].items():
        for method in DOC_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            for tag in operation.get("tags", ["other"]):
                groups.setdefault(tag, []).append({"method": method.upper(), "path": path, **operation})
    descriptions = {tag["name"]: tag.get("description", "") for tag in doc.get("tags", [])}
    return render_template(
        "api/docs.html", doc=doc, groups=groups, descriptions=descriptions, openapi_path=OPENAPI_PATH
    )


def init_app(app) -> None:
    app.config.setdefault("API_TITLE", "Samosval API")
    app.config.setdefault("API_VERSION", __version__)
    app.config.setdefault("OPENAPI_VERSION", "3.1.0")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "info": {
                "description": "Everything the portal's pages do, as JSON. Errors: "
                '{"error": {"code", "message"}}. Lists: '
                '{"items", "next_cursor"}; pass next_cursor back as cursor.'
            },
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
            "components": {"securitySchemes": SECURITY_SCHEMES},
        },
    )
    api = Api(app)  # one per app: tests build many apps
    app.extensions["samosval_api"] = api
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    app.register_blueprint(docs_bp)
