"""Notifications (issue 21): people's subscriptions, and the channels an admin
configures with their delivery logs. Nothing here sends: the worker does."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import notify_worker, permissions
from ..crypto import app_keyring
from ..db import get_db
from ..domain import ValidationError
from ..domain import notifications as notify
from ..i18n import translator
from ..simulator.runtime import sim_now
from ..web import safe_next

bp = Blueprint("notifications", __name__)


def _subscriptions_page(form=None, errors=None, status=200):
    db = get_db()
    return render_template(
        "notifications/subscriptions.html",
        subscriptions=notify.list_subscriptions(db, current_user.id),
        channels=notify.list_channels(db, enabled_only=True),
        events=notify.EVENTS,
        scopes=notify.SCOPES,
        form=form or {"scope": "owned", "events": list(notify.EVENTS)},
        errors=errors or {},
        may_manage=permissions.can_manage_channels(current_user),
    ), status


@bp.route("/notifications")
@login_required
def my_subscriptions():
    return _subscriptions_page()


@bp.route("/notifications/subscribe", methods=["POST"])
@login_required
def subscribe():
    form = {
        "scope": request.form.get("scope", ""),
        "target_id": request.form.get("target_id", ""),
        "channel_id": request.form.get("channel_id", ""),
        "recipient": request.form.get("recipient", ""),
        "events": request.form.getlist("events"),
    }
    try:
        notify.subscribe(get_db(), current_user, form, sim_now())
    except ValidationError as exc:
        return _subscriptions_page(form, exc.errors, 400)
    flash(_("Subscribed."), "success")
    return redirect(safe_next(request.form.get("next")) or url_for(".my_subscriptions"))


@bp.route("/notifications/unsubscribe", methods=["POST"])
@login_required
def unsubscribe():
    subscription_id = notify.parse_id(request.form.get("subscription_id"))
    if subscription_id is None:
        abort(400, _("Choose a subscription."))
    subscription = notify.get_subscription(get_db(), subscription_id)
    notify.unsubscribe(get_db(), current_user, subscription, sim_now())
    flash(_("Unsubscribed."), "success")
    return redirect(safe_next(request.form.get("next")) or url_for(".my_subscriptions"))


# --- channels (admins) ---------------------------------------------------------------------


def _require_admin() -> None:
    if not permissions.can_manage_channels(current_user):
        abort(403)


def _channel_or_404(channel_id: int):
    _require_admin()
    channel = notify.get_channel(get_db(), channel_id)
    if channel is None:
        abort(404)
    return channel


@bp.route("/admin/notifications")
@login_required
def list_channels():
    _require_admin()
    channels = notify.list_channels(get_db())
    return render_template(
        "notifications/channels.html",
        channels=channels,
        kinds=notify.KINDS,
        summaries={c["id"]: notify.channel_summary(c) for c in channels},
    )


def _channel_form(kind: str, channel=None, form=None, errors=None, status=200):
    settings = {}
    if channel is not None:
        settings = {k: v for k, v in json.loads(channel["settings"]).items() if k != "url_hint"}
        settings["name"] = channel["name"]
        settings["enabled"] = bool(channel["enabled"])
    values = {**settings, **(form or {})}
    return render_template(
        "notifications/channel_form.html",
        kind=kind,
        channel=channel,
        values=values,
        errors=errors or {},
        kinds=notify.KINDS,
        secret_fields=notify.SECRET_FIELDS[kind],
        security_choices=notify.SMTP_SECURITY,
        summary=notify.channel_summary(channel) if channel is not None else "",
    ), status


def _plain_form() -> dict:
    """The form without its secret fields: those are never shown back."""
    return {
        k: v
        for k, v in request.form.items()
        if k not in ("url", "signing_secret", "bot_token", "password", "csrf_token")
    }


@bp.route("/admin/notifications/new/<any(webhook, slack, telegram, email):kind>", methods=["GET", "POST"])
@login_required
def new_channel(kind: str):
    _require_admin()
    if request.method == "POST":
        try:
            channel_id = notify.save_channel(
                get_db(),
                current_user,
                kind,
                request.form.to_dict(),
                app_keyring(current_app.config),
                sim_now(),
            )
        except ValidationError as exc:
            return _channel_form(kind, form=_plain_form(), errors=exc.errors, status=400)
        flash(_("Channel saved."), "success")
        return redirect(url_for(".channel_deliveries", channel_id=channel_id))
    return _channel_form(kind)


@bp.route("/admin/notifications/<int:channel_id>", methods=["GET", "POST"])
@login_required
def edit_channel(channel_id: int):
    channel = _channel_or_404(channel_id)
    if request.method == "POST":
        try:
            notify.save_channel(
                get_db(),
                current_user,
                channel["kind"],
                request.form.to_dict(),
                app_keyring(current_app.config),
                sim_now(),
                channel_id=channel_id,
            )
        except ValidationError as exc:
            return _channel_form(channel["kind"], channel, form=_plain_form(), errors=exc.errors, status=400)
        flash(_("Channel saved."), "success")
        return redirect(url_for(".list_channels"))
    return _channel_form(channel["kind"], channel)


@bp.route("/admin/notifications/<int:channel_id>/delete", methods=["POST"])
@login_required
def delete_channel(channel_id: int):
    channel = _channel_or_404(channel_id)
    notify.delete_channel(get_db(), current_user, channel, sim_now())
    flash(_("Channel deleted."), "success")
    return redirect(url_for(".list_channels"))


@bp.route("/admin/notifications/<int:channel_id>/deliveries")
@login_required
def channel_deliveries(channel_id: int):
    channel = _channel_or_404(channel_id)
    return render_template(
        "notifications/deliveries.html",
        channel=channel,
        summary=notify.channel_summary(channel),
        deliveries=notify.deliveries(get_db(), channel_id),
        errors={},
        max_attempts=notify.MAX_ATTEMPTS,
    )


@bp.route("/admin/notifications/<int:channel_id>/test", methods=["POST"])
@login_required
def test_channel(channel_id: int):
    channel = _channel_or_404(channel_id)
    try:
        notify.send_test(
            get_db(),
            current_user,
            channel,
            request.form,
            sim_now(),
            locale=str(get_locale()),
            translate=translator(current_app._get_current_object()),
        )
    except ValidationError as exc:
        return render_template(
            "notifications/deliveries.html",
            channel=channel,
            summary=notify.channel_summary(channel),
            errors=exc.errors,
            deliveries=notify.deliveries(get_db(), channel_id),
            max_attempts=notify.MAX_ATTEMPTS,
        ), 400
    notify_worker.wake()
    flash(_("Test message queued: it appears below once sent."), "success")
    return redirect(url_for(".channel_deliveries", channel_id=channel_id))


@bp.route("/admin/notifications/<int:channel_id>/retry", methods=["POST"])
@login_required
def retry_dead(channel_id: int):
    channel = _channel_or_404(channel_id)
    count = notify.retry_dead(get_db(), current_user, channel, sim_now())
    notify_worker.wake()
    flash(_("%(count)s dead messages will be tried again.", count=count), "success")
    return redirect(url_for(".channel_deliveries", channel_id=channel_id))


@bp.app_context_processor
def _notification_helpers():
    """For the deployment page's "Notify me" form."""
    return {
        "notification_channels": lambda: notify.list_channels(get_db(), enabled_only=True),
        "notification_events": notify.EVENTS,
    }
