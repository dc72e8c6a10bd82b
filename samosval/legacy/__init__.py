"""The hand-kept migration history (``PRAGMA user_version`` 1..11), frozen.

Samosval kept its SQLite schema by hand until version 11; Alembic took over from
there (``samosval/alembic``). These steps only bring an older SQLite database to
version 11, after which it is conformed to the Alembic baseline and stamped (see
:func:`samosval.migrations.upgrade_database`). Never edit them: change the schema
with a new Alembic revision.
"""
