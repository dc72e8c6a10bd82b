"""Every user-facing string has a Russian translation."""

from samosval.i18n_tools import missing_translations


def test_every_source_string_is_translated_to_russian():
    missing = missing_translations("ru")
    assert not missing, "untranslated (run python -m samosval.i18n_tools missing): " + ", ".join(
        sorted(missing)[:20]
    )


# --- One language (issue 19): nothing English leaks into the Russian UI ------------

import html as html_lib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402
from babel.messages.pofile import read_po  # noqa: E402

from samosval import audit  # noqa: E402
from samosval.domain import alerts as alert_domain  # noqa: E402
from samosval.i18n import load_catalog, po_files  # noqa: E402
from samosval.i18n_tools import extract_messages  # noqa: E402
from tests import factories  # noqa: E402

PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def test_every_po_file_parses_and_keeps_the_placeholders_of_its_source():
    for path in po_files("ru"):
        with path.open("rb") as handle:
            catalog = read_po(handle, locale="ru")
        for message in catalog:
            if not message.id or not message.string:
                continue
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            wanted = set(PLACEHOLDER.findall(ids[0]))
            for text in strings:
                assert set(PLACEHOLDER.findall(text)) == wanted, f"{path.name}: {ids[0]!r} -> {text!r}"


def test_audit_actions_targets_outcomes_and_alert_texts_have_russian():
    from samosval.routes.alert_routes import ALERT_TYPE_LABELS
    from samosval.templating import OUTCOME_LABELS, STATUS_LABELS

    catalog = load_catalog("ru")
    words = [
        *audit.ACTIONS.values(),
        *audit.TARGET_LABELS.values(),
        *alert_domain.MESSAGES.values(),
        *(str(v._args[0]) if hasattr(v, "_args") else v for v in OUTCOME_LABELS.values()),
        *(v._args[0] for v in STATUS_LABELS.values()),
        *(v._args[0] for v in ALERT_TYPE_LABELS.values()),
        "system",
        "just now",
    ]
    missing = [w for w in words if not (catalog.get(w) and catalog.get(w).string)]
    assert not missing, missing


def visible_text(page: str) -> str:
    """What a person reads: text nodes, titles, placeholders and aria-labels (no scripts,
    no log windows)."""
    page = re.sub(r"<script\b.*?</script>", " ", page, flags=re.S)
    page = re.sub(r"<template\b.*?</template>", " ", page, flags=re.S)
    # Logs are the simulated tools' own output (like a real CI runner's): quoted as printed.
    page = re.sub(r'<pre class="build-log-raw">.*?</pre>', " ", page, flags=re.S)
    page = re.sub(r'<div class="log-window"[^>]*>.*?</div>', " ", page, flags=re.S)
    attributes = " ".join(re.findall(r'(?:title|placeholder|aria-label)="([^"]*)"', page))
    text = re.sub(r"<[^>]+>", "\n", page)
    return html_lib.unescape(text + "\n" + attributes)


# Source strings that are also the same word in Russian or are names, not sentences.
NOT_WORDS = {"CPU", "RAM", "vCPU", "IP", "SSE", "URL", "ID", "CSV", "JSON", "UTC"}


def english_sentences() -> set[str]:
    """Every source string of two words or more (a word alone may be a code or name)."""
    found = set()
    for msgid in extract_messages():
        text = PLACEHOLDER.sub("", msgid).strip()
        if len(re.findall(r"[A-Za-z]{2,}", text)) >= 2 and text not in NOT_WORDS:
            found.add(text)
    return found


@pytest.fixture
def lived_in(app, db, users, sample):
    """Every kind of row a page shows: a failed build and deployment with alerts,
    audit rows by people and by the system, a user as a target."""
    from samosval.domain import builds as build_domain
    from samosval.domain import deployments as deployment_domain

    state = app.extensions["samosval"].state
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    build_domain.finish_failure(db, build_id, "", "exit code 1", now=1_800_000_000.0)
    db.execute("UPDATE deployments SET status = 'deploying' WHERE id = ?", (sample["deployment_id"],))
    db.commit()
    deployment_domain.mark_failed(
        db, state, sample["deployment_id"], "port already allocated", now=1_800_000_000.0
    )
    audit.record(
        db,
        "user_block",
        user_id=users["root"],
        target_type="user",
        target_id=users["dana"],
        now=1_800_000_000.0,
    )
    audit.record(
        db, "alert_resolve", user_id=users["oleg"], target_type="alert", target_id=1, now=1_800_000_000.0
    )
    db.commit()
    return {"build": build_id, **sample}


def test_main_pages_in_russian_show_no_english_sentence(auth, lived_in):
    sentences = english_sentences()
    pages = [
        ("root", "/dashboard"),
        ("dana", "/dashboard"),
        ("oleg", "/dashboard"),
        ("dana", "/requests"),
        ("dana", "/requests/new"),
        ("dana", f"/requests/{lived_in['request_id']}"),
        ("oleg", "/builds"),
        ("oleg", f"/builds/{lived_in['build']}"),
        ("oleg", "/images"),
        ("oleg", "/deployments"),
        ("oleg", f"/deployments/{lived_in['deployment_id']}"),
        ("oleg", "/alerts"),
        ("root", "/admin/users"),
        ("root", "/admin/audit"),
        ("dana", "/account/sessions"),
    ]
    leaks = []
    for who, path in pages:
        response = auth.client_for(who).get(path)
        assert response.status_code == 200, path
        text = visible_text(response.get_data(as_text=True))
        leaks += [f"{path} ({who}): {s!r}" for s in sentences if s in text]
    assert not leaks, "\n".join(leaks)


def test_alert_audit_and_actor_texts_are_russian(auth, users, lived_in):
    alerts = auth.client_for("oleg").get("/alerts").get_data(as_text=True)
    assert f"Сборка #{lived_in['build']} упала: exit code 1" in alerts
    assert "Развёртывание billing-dev (#" in alerts and "упало: port already allocated" in alerts
    assert "Build #" not in visible_text(alerts) and "Deployment billing" not in visible_text(alerts)
    assert "развёртывание #" in alerts  # the target, in words

    audit_page = auth.client_for("root").get("/admin/audit").get_data(as_text=True)
    table = audit_page.split('id="audit-table"', 1)[1]
    assert "сборка упала" in table and "сборка завершена" not in table
    assert "пользователь dana" in audit_page and f"пользователь #{users['dana']}" not in audit_page
    options = re.findall(
        r'<option value="(\w+)"[^>]*>([^<]+)</option>',
        audit_page.split('id="f-action"', 1)[1].split("</select>", 1)[0],
    )
    assert options and all(code != label.strip() for code, label in options), options
    assert ("alert_resolve", "оповещение закрыто") in [(c, label.strip()) for c, label in options] or all(
        not re.fullmatch(r"[a-z_]+", label.strip()) for _code, label in options
    )

    for who in ("root", "oleg"):  # the system's actions: the same word on the dashboard and in the audit log
        dashboard = auth.client_for(who).get("/dashboard").get_data(as_text=True)
        assert 'data-actor="system">система<' in dashboard
        assert "<td>—</td>" not in dashboard
    assert 'data-actor="system">система<' in audit_page
    details = json.loads(json.dumps({"ok": True}))  # the JSON API keeps codes: nothing to translate there
    assert details


def test_main_pages_in_english_show_no_russian(auth, lived_in):
    leaks = []
    for who, path in [
        ("root", "/dashboard"),
        ("dana", "/dashboard"),
        ("oleg", "/alerts"),
        ("root", "/admin/audit"),
        ("oleg", f"/deployments/{lived_in['deployment_id']}"),
        ("oleg", f"/builds/{lived_in['build']}"),
        ("dana", "/requests/new"),
    ]:
        client = auth.client_for(who)
        client.post("/lang", data={"lang": "en", "next": "/"})
        client.get("/dashboard")  # shows (and drops) a flash written in Russian at login
        text = visible_text(client.get(path).get_data(as_text=True))
        leaks += [
            f"{path} ({who}): {line.strip()!r}" for line in text.splitlines() if re.search("[А-Яа-яЁё]", line)
        ]
    assert not leaks, "\n".join(leaks[:20])
