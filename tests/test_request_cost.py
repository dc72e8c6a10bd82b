"""What every request pays (issue 23): templates look the translation catalogue
up once per request, and still follow the language from one request to the next."""

from __future__ import annotations

from unittest import mock

import flask_babel

from samosval import i18n


def test_templates_find_the_catalogue_once_per_request(client):
    with mock.patch.object(i18n, "get_translations", wraps=flask_babel.get_translations) as lookup:
        page = client.get("/login").get_data(as_text=True)
    assert "Вход в Самосвал" in page
    assert page.count("<") > 20  # a whole page, many translated strings
    assert lookup.call_count == 1


def test_the_cached_catalogue_follows_the_language_between_requests(client):
    assert "Вход в Самосвал" in client.get("/login").get_data(as_text=True)
    client.post("/lang", data={"lang": "en", "next": "/login"})
    assert "Log in to Samosval" in client.get("/login").get_data(as_text=True)
    client.post("/lang", data={"lang": "ru", "next": "/login"})
    assert "Вход в Самосвал" in client.get("/login").get_data(as_text=True)


def test_the_exact_time_is_what_babel_wrote_for_that_pattern(app):
    from datetime import datetime

    from flask_babel import format_datetime

    from samosval import templating

    with app.test_request_context("/"):
        for value in ("2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z", "1999-03-04T05:06:07Z"):
            expected = format_datetime(datetime.fromisoformat(value), "yyyy-MM-dd HH:mm:ss")
            assert templating.exact_time(value) == expected
            assert f'title="{expected} UTC"' in templating.format_time(value)
        assert templating.exact_time("not a time") == "not a time"
        assert templating.format_time("") == "—"
