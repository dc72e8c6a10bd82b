"""Who may do what (spec section 3): every rule in one place, and nothing else.

Pure functions of a user and a row: no Flask, no database. Routes ask them
before acting, the domain asks them inside its commands, templates ask them
before showing a button (they are the ``access`` template global). A user is
anything with ``id``, ``username`` and ``role`` (and ``is_authenticated``, see
:func:`_signed_in`); rows are
``sqlite3.Row`` or dicts. A deployment, build or image row carries the columns of
the request behind it (``owner_id``, ``created_by``, ``collaborators``).

Whether an action fits an object's *state* (a running deployment cannot be
started) is the domain's rule; some questions here take the state into account
only to decide which buttons to show (``can_build(user, req)``), and answer the
bare permission when called without the object.
"""

from __future__ import annotations

from .domain import N_
from .domain.repos import split_logins
from .domain.statuses import ACTIVE_BUILD_STATUSES

ROLES = ("admin", "operator", "developer")
STAFF_ROLES = ("admin", "operator")
PROTECTED_USERNAME = "root"  # never blocked or demoted (spec 4.8)

FORBIDDEN = N_("You are not allowed to do this.")


def _signed_in(user) -> bool:
    """Flask-Login's anonymous visitor says ``is_authenticated = False``; a domain
    actor without that attribute (the CLI, a test's namespace) is a known user."""
    return user is not None and bool(getattr(user, "is_authenticated", True))


# --- roles -----------------------------------------------------------------


def is_admin(user) -> bool:
    return _signed_in(user) and user.role == "admin"


def is_staff(user) -> bool:
    """Operators and admins: they see and manage everything operational."""
    return _signed_in(user) and user.role in STAFF_ROLES


# --- image requests ----------------------------------------------------------


def is_request_member(user, req) -> bool:
    """Creator, owner, or a collaborator by whole login (``ann`` never matches ``joanna``)."""
    if not _signed_in(user) or req is None:
        return False
    return (
        req["created_by"] == user.id
        or req["owner_id"] == user.id
        or user.username.lower() in split_logins(req["collaborators"])
    )


def is_request_owner(user, req) -> bool:
    return _signed_in(user) and req["owner_id"] == user.id


def _is_author(user, req) -> bool:
    return _signed_in(user) and (req["created_by"] == user.id or req["owner_id"] == user.id)


def can_view_request(user, req) -> bool:
    return is_staff(user) or is_request_member(user, req)


def can_create_request(user) -> bool:
    return _signed_in(user)


def can_edit_request(user, req) -> bool:
    """Staff edit any field at any time (spec 4.2: the operator corrects parameters);
    the creator or owner only while the request is a draft or was rejected."""
    return is_staff(user) or (_is_author(user, req) and req["status"] in ("draft", "rejected"))


def can_submit_request(user, req) -> bool:
    return req["status"] == "draft" and (is_staff(user) or _is_author(user, req))


def can_review_request(user, req=None) -> bool:
    """Move a request along the review flow (in_review, approved, rejected, back)."""
    return is_staff(user)


def can_rework_request(user, req) -> bool:
    """The creator or owner may send a rejected request back to draft."""
    return req["status"] == "rejected" and (is_staff(user) or _is_author(user, req))


def can_build(user, req=None) -> bool:
    """Start a build: staff only; with ``req``, also only of an approved request."""
    return is_staff(user) and (req is None or req["status"] == "approved")


def can_simulate_commit(user, req) -> bool:
    """The "Simulate new commit" button restarts deployments, so it follows the
    restart button: staff, or the request's owner (the hook then restarts only the
    deployments :func:`can_control_deployment` lets them restart)."""
    return is_staff(user) or is_request_owner(user, req)


# --- builds and images -------------------------------------------------------


def can_view_build(user, build) -> bool:
    return can_view_request(user, build)


def can_cancel_build(user, build=None) -> bool:
    """Cancel a build: staff only; with ``build``, also only while it is active."""
    return is_staff(user) and (build is None or build["status"] in ACTIVE_BUILD_STATUSES)


def can_view_image(user, image) -> bool:
    return can_view_request(user, image)


def can_create_deployment(user, image=None) -> bool:
    return is_staff(user)


# --- deployments -------------------------------------------------------------


def can_view_deployment(user, deployment) -> bool:
    return can_view_request(user, deployment)


def can_control_deployment(user, deployment, action: str) -> bool:
    """Permission only (spec 3.2); whether the action fits the current status is
    ``domain.deployments.action_applies``. Staff may do anything; the developer who
    owns the request may start/stop/restart, but not start or restart what an
    operator stopped. Delete is staff only."""
    if is_staff(user):
        return True
    if action not in ("start", "stop", "restart") or not is_request_owner(user, deployment):
        return False
    return not (action in ("start", "restart") and deployment["stopped_by_operator"])


def can_rollback(user, deployment) -> bool:
    """Roll a deployment back to an earlier release, or unpin it: whoever may
    restart it (issue 20)."""
    return can_control_deployment(user, deployment, "restart")


def approval_refusal(user, release) -> str | None:
    """Why ``user`` may not approve or reject a pending ``release`` (None: they may).
    Four eyes: an operator or admin other than the person who asked."""
    if not is_staff(user):
        return FORBIDDEN
    if release["created_by"] is not None and release["created_by"] == user.id:
        return N_("You asked for this release: someone else must approve or reject it.")
    return None


def can_decide_release(user, release) -> bool:
    return approval_refusal(user, release) is None


def can_see_approvals(user) -> bool:
    """The pending-approvals list and its count in the navigation."""
    return is_staff(user)


def can_manage_environments(user) -> bool:
    """Mark environments as protected."""
    return is_admin(user)


def stops_as_operator(user) -> bool:
    """A stop by staff sets ``stopped_by_operator``; only staff clear it by starting."""
    return is_staff(user)


# --- configuration and notifications (issue 21) ------------------------------------------


def can_change_config(user, deployment) -> bool:
    """Change a deployment's environment variables: a change rolls out a new release,
    so whoever may restart the deployment."""
    return can_control_deployment(user, deployment, "restart")


def can_manage_channels(user) -> bool:
    """Configure notification channels, read their delivery logs, send a test."""
    return is_admin(user)


def can_subscribe(user, req) -> bool:
    """Subscribe to a request's (or its deployments') events: whoever may see it."""
    return can_view_request(user, req)


def can_delete_subscription(user, subscription) -> bool:
    return _signed_in(user) and (subscription["user_id"] == user.id or is_admin(user))


def may_be_notified(user, req) -> bool:
    """Checked again when an event is fanned out: an active user who may still see
    the request (a blocked user, or one removed as collaborator, hears nothing)."""
    return bool(getattr(user, "is_active", True)) and can_view_request(user, req)


# --- administration ------------------------------------------------------------


def can_manage_users(user) -> bool:
    return is_admin(user)


def block_refusal(actor, target) -> str | None:
    """Why ``actor`` may not block or unblock ``target`` (None: they may)."""
    if not is_admin(actor):
        return FORBIDDEN
    if target["username"] == PROTECTED_USERNAME:
        return N_("root cannot be blocked.")
    if target["id"] == actor.id:
        return N_("You cannot block yourself.")
    return None


def role_change_refusal(actor, target) -> str | None:
    if not is_admin(actor):
        return FORBIDDEN
    if target["username"] == PROTECTED_USERNAME:
        return N_("root cannot be demoted.")
    if target["id"] == actor.id:
        return N_("You cannot change your own role.")
    return None


def password_reset_refusal(actor, target) -> str | None:
    if not is_admin(actor):
        return FORBIDDEN
    if target["id"] == actor.id:
        return N_("Use the change password page for your own password.")
    if target["username"] == PROTECTED_USERNAME and actor.username != PROTECTED_USERNAME:
        return N_("Only root can reset the root password.")
    return None


def can_block_user(actor, target) -> bool:
    return block_refusal(actor, target) is None


def can_change_role(actor, target) -> bool:
    return role_change_refusal(actor, target) is None


def can_reset_password(actor, target) -> bool:
    return password_reset_refusal(actor, target) is None


def can_view_audit(user) -> bool:
    return is_admin(user)


def can_view_alerts(user) -> bool:
    return is_staff(user)


def can_resolve_alert(user, alert=None) -> bool:
    return is_staff(user) and (alert is None or not alert["resolved"])


def can_view_deliveries(user) -> bool:
    return is_staff(user)


def can_manage_tokens(user) -> bool:
    return is_admin(user)


# --- personal access tokens (issue 22) -----------------------------------------------
# read: every GET of the API; write: requests, builds, deployments and releases
# (every other method); admin: users and audit. A token acts as its owner, so the
# owner's role still applies on top of the scopes: a token never exceeds it.

TOKEN_SCOPES = ("read", "write", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def grantable_scopes(user) -> tuple:
    """The scopes ``user`` may put on a token: admin only for admins."""
    if not _signed_in(user):
        return ()
    return TOKEN_SCOPES if is_admin(user) else ("read", "write")


def required_scope(method: str, declared: str | None = None) -> str:
    """The scope an API call needs: what the operation declares, else by method."""
    if declared is not None:
        return declared
    return "read" if method.upper() in SAFE_METHODS else "write"


def token_allows(scopes, required: str) -> bool:
    return required in scopes


# --- visibility in SQL -----------------------------------------------------------


def visible_requests_sql(user, alias: str = "r") -> tuple[str, list]:
    """A WHERE fragment limiting ``image_requests AS alias`` to what ``user`` may see.
    The same rule as :func:`can_view_request`, for list queries."""
    if is_staff(user):
        return "1 = 1", []
    # A UNION of three index lookups: an OR across columns would make SQLite
    # scan every request (17.7 ms vs 2.1 ms at 50,000 requests).
    return (
        f"{alias}.id IN (SELECT id FROM image_requests WHERE created_by = ? "
        "UNION SELECT id FROM image_requests WHERE owner_id = ? "
        "UNION SELECT request_id FROM request_collaborators WHERE username = ?)",
        [user.id, user.id, user.username.lower()],
    )


# --- accounts and sessions ------------------------------------------------------

# Audit actions of the admin area (accounts, sign-ins, webhook tokens): only the
# audit page's readers (admins) see them, on the dashboard too.
ADMIN_EVENT_ACTIONS = frozenset(
    {
        "login",
        "login_failed",
        "logout",
        "password_change",
        "password_change_failed",
        "user_create",
        "user_block",
        "user_unblock",
        "user_role_change",
        "user_password_reset",
        "session_end",
        "sessions_end_all",
        "token_create",
        "token_revoke",
        "api_token_create",
        "api_token_revoke",
        "api_token_refused",
    }
)


def hidden_event_actions(user) -> frozenset:
    """Audit actions ``user`` may not see in event lists (the dashboard's)."""
    return frozenset() if can_view_audit(user) else ADMIN_EVENT_ACTIONS


def can_manage_sessions(actor, target_user_id: int) -> bool:
    """See and end the sessions of ``target_user_id``: their own, or any as admin."""
    return _signed_in(actor) and (actor.id == target_user_id or is_admin(actor))


def searchable_roles(user) -> tuple:
    """Roles whose logins ``user`` may look up (/api/users/search). A developer needs
    only developers (the owner and collaborators of a request); staff need all."""
    if is_staff(user):
        return ROLES
    return ("developer",) if _signed_in(user) else ()


def password_change_required(user, *, root_default_allowed: bool) -> bool:
    """Must ``user`` change their password before doing anything else? Yes after an
    admin reset (``must_change_password``). root's flag means the spec's default
    root:root, which is tolerated (with a banner) only when ``root_default_allowed``:
    ``python app.py`` on a loopback address."""
    if not _signed_in(user) or not getattr(user, "must_change_password", False):
        return False
    return not (user.username == PROTECTED_USERNAME and root_default_allowed)
