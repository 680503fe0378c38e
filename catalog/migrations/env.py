"""Alembic environment of the govdx catalog DB.

Run programmatically by :func:`catalog.migrate` (which hands over an open connection in
``config.attributes["connection"]``), or from a checkout for new revisions::

    alembic -c catalog/alembic.ini revision --autogenerate -m "sandbox jobs"
    GOVDX_CATALOG_URL=sqlite:///var/catalog.db alembic -c catalog/alembic.ini upgrade head

``render_as_batch=True`` so that ALTERs on SQLite become table copies (Alembic batch mode).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from catalog._db import load_models

config = context.config
if config.config_file_name is not None and "connection" not in config.attributes:
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = load_models()


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = os.environ.get("GOVDX_CATALOG_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set GOVDX_CATALOG_URL or sqlalchemy.url to the catalog DB URL")
    return url


if context.is_offline_mode():
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        _configure(shared)
    else:
        engine = create_engine(_url())
        try:
            with engine.begin() as conn:
                _configure(conn)
        finally:
            engine.dispose()
