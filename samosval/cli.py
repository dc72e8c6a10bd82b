"""Command-line tools that mirror the domain: ``flask --app app <command>``."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import with_appcontext

from . import audit
from .crypto import SealError, keyring
from .db import connect, transaction
from .domain import config_vars as config_domain
from .domain import notifications as notification_domain
from .domain import users as user_domain


@click.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(user_domain.ROLES), default="developer", show_default=True)
@click.password_option()
@with_appcontext
def create_user_command(username, role, password):
    """Create a user (prompts for the password)."""
    db = connect(current_app.config["DATABASE"])
    try:
        user_domain.create_user(db, username, password, role, now=time.time())
    except user_domain.ValidationError as exc:
        raise click.ClickException(
            "; ".join(f"{field}: {message}" for field, message in exc.errors.items())
        ) from exc
    finally:
        db.close()
    click.echo(f"Created {role} {username.strip().lower()}.")


@click.command("rotate-encryption-key")
@click.option(
    "--old-key",
    "old_keys",
    multiple=True,
    help="A previous SAMOSVAL_ENCRYPTION_KEY (repeatable; SAMOSVAL_ENCRYPTION_OLD_KEYS works too).",
)
@with_appcontext
def rotate_encryption_key_command(old_keys):
    """Re-encrypt every stored secret under the current key.

    Set SAMOSVAL_ENCRYPTION_KEY to the new key, name the previous one with --old-key
    (a key derived from the secret key is always tried), then run this. All or
    nothing: if any value cannot be opened, nothing changes."""
    config = current_app.config
    configured = [k.strip() for k in (config.get("ENCRYPTION_OLD_KEYS") or "").split(",") if k.strip()]
    ring = keyring(config["SECRET_KEY"], config.get("ENCRYPTION_KEY"), [*configured, *old_keys])
    db = connect(config["DATABASE"])
    try:
        with transaction(db):
            values = config_domain.reseal_all(db, ring)
            channels = notification_domain.reseal_all(db, ring)
            audit.record(
                db, "encryption_key_rotate", now=time.time(), details={"values": values, "channels": channels}
            )
    except SealError as exc:
        raise click.ClickException(
            "a stored secret cannot be opened with the current key or any old key: pass the previous "
            "key with --old-key; nothing was changed"
        ) from exc
    finally:
        db.close()
    click.echo(f"Re-encrypted {values} secret value(s) and {channels} channel(s) under the current key.")


def init_app(app) -> None:
    from .backup import backup_command
    from .simulator.cli import sim_step_command

    app.cli.add_command(create_user_command)
    app.cli.add_command(backup_command)
    app.cli.add_command(sim_step_command)
    app.cli.add_command(rotate_encryption_key_command)
