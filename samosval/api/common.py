"""What every API blueprint shares: the blueprint class (input errors as 400 in the
one error shape), the scope marker, the error and page schemas, and cursor
pagination."""

from __future__ import annotations

import base64
import binascii
import sqlite3

from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema, fields, validate
from webargs.flaskparser import FlaskParser

from ..domain import N_, ValidationError

PREFIX = "/api/v1"
NOT_JSON = N_("The body is not valid JSON.")
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_CURSOR = 2**62


class Parser(FlaskParser):
    """Bad input is a ``ValidationError`` like the forms' (a 400 in the one error
    shape, from the app's one handler), field by field. webargs would say 422."""

    DEFAULT_VALIDATION_STATUS = 400

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        raise ValidationError(_flatten(error.messages))

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        raise ValidationError({"body": NOT_JSON}, message=NOT_JSON)


def _flatten(messages) -> dict[str, str]:
    """webargs' ``{"json": {"field": ["text"]}}`` -> ``{"field": "text"}``."""
    flat: dict[str, str] = {}
    for location in (messages or {}).values():
        if not isinstance(location, dict):
            continue
        for field, texts in location.items():
            if isinstance(texts, dict):  # a nested field or a list item
                texts = [
                    text
                    for inner in texts.values()
                    for text in (inner if isinstance(inner, list) else [str(inner)])
                ]
            flat[str(field)] = (
                " ".join(str(text) for text in texts) if isinstance(texts, list) else str(texts)
            )
    return flat


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = Parser()

    def __init__(self, name: str, import_name: str, **kwargs):
        kwargs.setdefault("url_prefix", PREFIX)
        super().__init__(name, import_name, **kwargs)


def scope(name: str):
    """Mark a view as needing ``name`` (users and audit need admin); without it the
    method decides (auth.enforce_token_scope)."""

    def decorator(view):
        view.required_scope = name
        return view

    return decorator


# --- schemas -------------------------------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.String(
        required=True,
        metadata={
            "description": "invalid, unauthorized, forbidden, insufficient_scope, not_found, conflict, ..."
        },
    )
    message = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Field errors of invalid input."},
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class PageArgsSchema(Schema):
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(max=40),
        metadata={"description": "next_cursor of the previous page"},
    )
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))


def page_schema(item_schema, name: str):
    """``{"items": [...], "next_cursor": str | null}`` around ``item_schema``."""
    return type(
        name,
        (Schema,),
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "next_cursor": fields.String(
                required=True,
                allow_none=True,
                metadata={"description": "Pass as cursor for the next page; null on the last page."},
            ),
        },
    )


# --- cursor pagination -------------------------------------------------------------------

BAD_CURSOR = N_("The cursor is not one this API gave out.")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> int | None:
    """The id a page starts below; None for the first page. A cursor this API did not
    give out is a 400."""
    if raw in (None, ""):
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        kind, _sep, number = text.partition(":")
        value = int(number)
        if kind != "id" or not 0 < value <= MAX_CURSOR or not number.isdigit():
            raise ValueError
    except (ValueError, binascii.Error, UnicodeError):
        raise ValidationError({"cursor": BAD_CURSOR}, message=BAD_CURSOR) from None
    return value


def cursor_page(db: sqlite3.Connection, sql: str, params, args: dict) -> dict:
    """One page of ``sql`` (a SELECT with an ``id`` column; its ORDER BY is replaced)
    newest id first, after the cursor in ``args``."""
    before = decode_cursor(args.get("cursor"))
    limit = args.get("limit") or DEFAULT_LIMIT
    base = sql.rsplit(" ORDER BY ", 1)[0]
    where = "WHERE page.id < ?" if before is not None else ""
    rows = db.execute(
        f"SELECT * FROM ({base}) AS page {where} ORDER BY page.id DESC LIMIT ?",
        [*params, *([before] if before is not None else []), limit + 1],
    ).fetchall()
    items = [dict(row) for row in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(items[-1]["id"]) if more and items else None}
