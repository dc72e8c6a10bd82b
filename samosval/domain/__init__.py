"""Domain rules shared by HTML routes, JSON routes and the simulation engine.

Modules here take a connection, plain values and ``now`` (the caller's clock),
never ``request``. Messages meant for users are English source strings marked
with ``N_`` so the extractor finds them; the web layer translates them when it
answers.
"""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark a string for translation without translating it here."""
    return message


# The largest row id SQLite stores: a larger number is no id (and would make it raise).
MAX_ID = 2**63 - 1


def parse_id(raw) -> int | None:
    """A row id from a form field or the query string, or None: not a whole
    number, not positive, or beyond SQLite's integers."""
    try:
        value = int(str(raw if raw is not None else "").strip())
    except ValueError:
        return None
    return value if 0 < value <= MAX_ID else None


# PostgreSQL text cannot hold U+0000 (SQLite's can): input carrying one is refused
# where it enters, on both databases (web.refuse_nul_input for forms and JSON bodies,
# hook_parsing for the commit hook, which records every call). Query strings are
# filters, never stored: each is validated or escaped where it is read.
NUL_REFUSED = N_("Text cannot contain the NUL character (U+0000).")


def without_nul(text: str) -> str:
    """``text`` with each U+0000 turned into U+0001: for filters (a NUL then matches
    nothing, on either database) and for text taken as it comes, such as a browser's
    User-Agent, which cannot be refused."""
    return text.replace("\x00", "\x01")


def holds_nul(value) -> bool:
    """Whether ``value`` (a string, or parsed JSON or form pairs: lists, tuples and
    objects, keys included) contains U+0000."""
    stack = [value]
    while stack:  # not recursive: a JSON body may nest deeply
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


# What each kind of refusal answers over HTTP.
REFUSAL_STATUS = {"invalid": 400, "forbidden": 403, "not_found": 404, "conflict": 409}


class Refused(Exception):
    """A command the domain will not carry out.

    ``kind`` is one of ``REFUSAL_STATUS`` (invalid, forbidden, not_found, conflict);
    ``message`` is English source text marked ``N_``, translated by the web layer;
    ``payload`` is extra data for JSON callers. One app-level handler
    (``samosval.web``) turns it into a response, so routes never catch it.
    """

    def __init__(self, kind: str, message: str, *, payload: dict | None = None):
        if kind not in REFUSAL_STATUS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.payload = dict(payload or {})

    @property
    def status(self) -> int:
        return REFUSAL_STATUS[self.kind]


class ValidationError(Refused):
    """Bad input, field by field: ``errors`` maps a field name to a message (English
    source text). Forms catch it to render again with the errors next to the fields;
    ``extra`` carries what the form shows besides (unknown collaborators)."""

    def __init__(
        self,
        errors: dict[str, str],
        *,
        extra: dict | None = None,
        message: str = N_("Check the highlighted fields."),
    ):
        super().__init__("invalid", message, payload={"errors": dict(errors)})
        self.errors = errors
        self.extra = dict(extra or {})
