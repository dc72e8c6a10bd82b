"""``next`` never puts a control character into a Location header: a CR/LF in it
was a 500 (Werkzeug refuses the header) and would be a split header elsewhere."""

from __future__ import annotations

import pytest

from samosval.web import safe_next

HOSTILE = ["/x\r\nA:b", "/x\nSet-Cookie: a=b", "/x\rA", "/x\x00", "/x\x7f", "/\tx"]


@pytest.mark.parametrize("target", HOSTILE)
def test_safe_next_refuses_control_characters(target):
    assert safe_next(target) is None


def test_safe_next_keeps_local_paths():
    assert safe_next("/requests/5?page=2") == "/requests/5?page=2"


def test_a_logged_in_login_page_with_a_crlf_next_goes_to_the_dashboard(auth):
    response = auth.client_for("dana").get("/login?next=%2Fx%0d%0aA:b")
    assert response.status_code == 302
    assert "\r" not in response.headers["Location"] and "A:b" not in response.headers["Location"]


@pytest.mark.parametrize("logged_in", [False, True])
def test_the_language_switch_with_a_crlf_next_redirects_safely(app, auth, logged_in):
    client = auth.client_for("dana") if logged_in else app.test_client()
    response = client.post("/lang", data={"lang": "en", "next": "/x\r\nA:b"})
    assert response.status_code == 302
    assert "A:b" not in response.headers["Location"]
