"""Online backups with SQLite's backup API: safe while the app keeps writing."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from .db import connect, is_postgres


class BackupError(Exception):
    pass


def backup_database(source_path: str, target_path: str, pages_per_step: int = 1024) -> dict:
    """Copy the live database to ``target_path`` and verify the copy.

    The copy is written next to the target and renamed into place only after
    ``PRAGMA integrity_check`` says ok, so a failed backup never leaves a
    half-written file where a good one is expected.
    """
    target = Path(target_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        partial.unlink()
    source = connect(source_path)
    copy = sqlite3.connect(partial)
    try:
        # Copying in steps lets writers in between; the backup API restarts a
        # step that saw a concurrent change, so the result is a consistent snapshot.
        source.backup(copy, pages=pages_per_step)
        copy.execute("PRAGMA journal_mode = DELETE")
        result = copy.execute("PRAGMA integrity_check").fetchone()[0]
        counts = {
            table: copy.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("users", "image_requests", "builds", "deployments", "audit_log")
        }
    finally:
        copy.close()
        source.close()
    if result != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(f"integrity check of the copy failed: {result}")
    os.replace(partial, target)
    return {"path": str(target), "integrity": result, "rows": counts, "bytes": target.stat().st_size}


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False))
@with_appcontext
def backup_command(path):
    """Back up the database to PATH while the app runs, and verify the copy."""
    if is_postgres(current_app.config["DATABASE"]):
        raise click.ClickException(
            'The data is in PostgreSQL: back it up with pg_dump (README, "Several processes").'
        )
    try:
        result = backup_database(current_app.config["DATABASE"], path)
    except (BackupError, sqlite3.Error) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Backup written to {result['path']} ({result['bytes']} bytes), integrity {result['integrity']}; "
        + ", ".join(f"{k}={v}" for k, v in result["rows"].items())
    )
