"""The catalog database: one declarative ``Base``, engines, sessions and migrations.

Every govdx table (catalog, and later sandbox, quality, reports, audit log) hangs off the one
:class:`Base` defined here, so one Alembic history migrates them all. A package that adds tables

1. defines its models on ``catalog.Base`` in its own ``_models`` module,
2. appends that module's dotted name to :data:`MODEL_MODULES` (so ``env.py`` and the schema
   test see the tables), and
3. adds a revision under ``catalog/migrations/versions/`` whose ``down_revision`` is the
   current head (``alembic -c catalog/alembic.ini revision --autogenerate -m "..."``).

Embedded default: SQLite with foreign keys enforced and WAL journaling (readers do not block the
writer). Production: PostgreSQL through the same URL setting (``GOVDX_CATALOG_URL``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from catalog._errors import CatalogError

#: Constraint names are derived, never left to the database: Alembic's SQLite batch mode and
#: PostgreSQL need stable names to drop or alter a constraint later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Modules that define models on :class:`Base`; imported before comparing or autogenerating.
MODEL_MODULES: list[str] = [
    "catalog._models",
    "sandbox._models",
    "quality._models",
    "sandbox._ledger",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class Base(DeclarativeBase):
    """Declarative base of every govdx table (SQLAlchemy 2 typed ``Mapped[...]`` models)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """The current time, tz-aware UTC (microseconds)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back tz-aware (``tzinfo=UTC``).

    SQLite has no time-zone type and returns naive values; PostgreSQL stores
    ``timestamptz``. Naive datetimes are refused on write, so no local time slips in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass a tz-aware time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def load_models() -> MetaData:
    """Import every module of :data:`MODEL_MODULES` and return ``Base.metadata``."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _is_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url


def _make_engine(url: str, *, foreign_keys: bool) -> Engine:
    try:
        if not _is_sqlite(url):
            return create_engine(url, pool_pre_ping=True)
        kwargs: dict[str, Any] = {}
        if _is_memory(url):
            # One shared connection, else every session would see a fresh empty database.
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ValueError) as exc:
        raise CatalogError(f"catalog URL {url!r} is not usable: {exc}") from exc
    memory = _is_memory(url)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return engine


def open_catalog(url: str) -> sessionmaker[Session]:
    """Open the catalog DB and return a session factory.

    Does not create or migrate tables: call :func:`migrate` first (once per process).
    Sessions do not expire objects on commit, so entries stay readable after the
    transaction ends.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:////srv/govdx/catalog.db`` or
            ``postgresql+psycopg://govdx@db/govdx``. SQLite connections get
            ``PRAGMA foreign_keys=ON`` and WAL journaling; ``sqlite://`` (in-memory) shares one
            connection.

    Returns:
        ``sessionmaker[Session]`` bound to a new engine (``factory.kw["bind"]``).

    Raises:
        CatalogError: the URL cannot be parsed or its driver is missing.

    Example:
        >>> import catalog
        >>> factory = catalog.open_catalog("sqlite://")
        >>> factory.kw["bind"].dialect.name
        'sqlite'
    """
    engine = _make_engine(url, foreign_keys=True)
    return sessionmaker(bind=engine, expire_on_commit=False)


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(url: str | Engine) -> None:
    """Bring the catalog DB to the newest schema (Alembic ``upgrade head``), programmatically.

    The migration scripts ship inside the package (``catalog/migrations``), so an installed
    wheel can migrate without an ``alembic.ini``. Running it on an up-to-date DB is a no-op.
    On SQLite, foreign keys are off while migrating (Alembic batch mode recreates tables, and
    dropping a parent table with enforcement on would cascade) and ``PRAGMA foreign_key_check``
    must come back empty before the migration is kept.

    Args:
        url: SQLAlchemy URL of the catalog DB, or an ``Engine`` (e.g. the in-memory engine of
            :func:`open_catalog`: ``factory.kw["bind"]``).

    Raises:
        CatalogError: a migration failed or left foreign-key violations (the cause is chained).

    Source:
        Alembic cookbook, "Sharing a Connection across one or more programmatic migration
        commands"; Alembic docs, "Running 'Batch' Migrations for SQLite".
    """
    from alembic import command

    own = not isinstance(url, Engine)
    engine = _make_engine(url, foreign_keys=False) if own else url  # type: ignore[arg-type]
    shown = url if own else engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # outside any transaction, else SQLite ignores the pragma
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            try:
                with conn.begin():
                    command.upgrade(_alembic_config(conn), "heads")
                    if sqlite:
                        bad = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
                        if bad:
                            raise CatalogError(
                                f"migration of {shown} left foreign-key violations: {bad[:5]}"
                            )
            finally:
                if sqlite and not own:  # the pooled connection goes back with enforcement on
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()
    except CatalogError:
        raise
    except Exception as exc:  # alembic raises plain exceptions as well as SQLAlchemyError
        raise CatalogError(f"catalog migration of {shown} failed: {exc}") from exc
    finally:
        if own:
            engine.dispose()
    if own:
        _private_sqlite_file(str(url))


_MIGRATED: set[str] = set()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """One catalog transaction: migrate (once per process and URL), then commit or roll back.

    Args:
        url: SQLAlchemy URL of the catalog DB.

    Yields:
        A ``Session``; committed when the block ends normally, rolled back if it raises.

    Raises:
        CatalogError: the migration failed.
    """
    if url not in _MIGRATED:
        migrate(url)
        _MIGRATED.add(url)
    factory = open_catalog(url)
    try:
        with factory.begin() as session:
            yield session
    finally:
        factory.kw["bind"].dispose()


def _private_sqlite_file(url: str) -> None:
    """Make a SQLite catalog file readable by its owner only (it holds password hashes and the
    audit log)."""
    import os

    if url.startswith("sqlite:///") and not _is_memory(url):
        path = Path(url.removeprefix("sqlite:///"))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if p.exists():
                os.chmod(p, 0o600)
