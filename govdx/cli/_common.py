"""Shared helpers of the CLI commands: settings, catalog sessions, output."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from govdx import GovdxError, Settings

console = Console()
err_console = Console(stderr=True)


#: top-level commands that may create a new home (or need none: ``client`` runs on the
#: requester's side)
MAY_CREATE_HOME = frozenset({"demo", "ingest", "serve", "users", "client"})


def get_settings() -> Settings:
    """The deployment's settings from ``GOVDX_*`` environment variables.

    Inside a command other than those of :data:`MAY_CREATE_HOME`, a home folder that does not
    exist is refused (exit 1): an unset GOVDX_HOME is ./var of the current directory, and a
    command run from elsewhere would otherwise start a new, empty deployment there (new keys
    included) without a word.
    """
    import os

    import click

    settings = Settings()
    ctx = click.get_current_context(silent=True)
    words = ctx.command_path.split() if ctx is not None else []
    top = words[1] if len(words) > 1 else ""
    if (
        ctx is not None
        and top not in MAY_CREATE_HOME
        and not settings.catalog_url
        and not settings.home.exists()
    ):
        unset = "GOVDX_HOME" not in os.environ
        fail(
            f"no govdx home at {settings.home}"
            + (" (GOVDX_HOME is unset, so it is ./var of the current directory)" if unset else "")
            + ": set GOVDX_HOME to your deployment's home, or create one with `govdx demo` or "
            "`govdx ingest CONTRACT` (部署目录不存在)"
        )
    return settings


def catalog_session(settings: Settings):
    """A migrated catalog session in one transaction (commit on success, rollback on error)."""
    import catalog

    return catalog.session_scope(settings.catalog_db_url)


def print_json(data: Any) -> None:
    """Print ``data`` as JSON (UTF-8, Chinese kept readable) to stdout."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def fail(exc: BaseException | str, code: int = 1) -> None:
    """Print an error and exit non-zero: for people on stderr, or — when the command was given
    ``--json`` — as ``{"error": <type>, "message": <text>}`` on stdout, so scripts always parse."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("as_json"):
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "Error"
        typer.echo(json.dumps({"error": kind, "message": str(exc)}, ensure_ascii=False))
    else:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    raise typer.Exit(code)


__all__ = [
    "GovdxError",
    "catalog_session",
    "console",
    "err_console",
    "fail",
    "get_settings",
    "print_json",
]
