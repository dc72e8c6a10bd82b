"""Command-line tools that mirror the domain: ``flask --app app <command>``."""
from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import with_appcontext

from .db import connect
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
            "; ".join(f"{field}: {message}" for field, message in exc.errors.items())) from exc
    finally:
        db.close()
    click.echo(f"Created {role} {username.strip().lower()}.")


def init_app(app) -> None:
    from .backup import backup_command
    from .simulator.cli import sim_step_command
    app.cli.add_command(create_user_command)
    app.cli.add_command(backup_command)
    app.cli.add_command(sim_step_command)
