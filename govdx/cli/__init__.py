"""The ``govdx`` command line (Typer). Every command has ``--help``; reading commands take ``--json``.

Tour::

    govdx demo --rows 20000            # build the 信易贷 scenario and ingest it through Airflow
    govdx ingest CONTRACT.yaml         # one department file into the lakehouse
    govdx catalog list / show CODE     # catalog entries, fields, versions, lineage
    govdx lineage show CODE            # upstream and downstream
    govdx quarantine show CODE         # rejected rows with their reasons (masked)
    govdx users add / sandbox submit|approve|run|result / client psi  # sandbox jobs
    govdx audit verify                 # SM3 chain and SM2-signed checkpoints
    govdx serve                        # HTTP API (/api/v1, CKAN /api/3/action, DCAT)
    govdx report sharing-rate --format html   # analysts' reports (tables, csv, xlsx, html)
"""

from __future__ import annotations

import typer

import govdx.cli._auth  # noqa: F401  (registers `govdx users passwd`)
from govdx.cli._audit import audit_app
from govdx.cli._catalog import catalog_app, lineage_app
from govdx.cli._client import client_app
from govdx.cli._demo import demo_command
from govdx.cli._ingest import ingest_command
from govdx.cli._keys import keys_app, publish_command
from govdx.cli._quality import quality_app
from govdx.cli._quarantine import quarantine_app
from govdx.cli._report import report_command
from govdx.cli._sandbox import sandbox_app, users_app
from govdx.cli._serve import serve_command

app = typer.Typer(
    name="govdx",
    help="govdx — privacy-preserving government data exchange (政务数据共享交换, 数据可用不可见).\n\n"
    "Settings come from GOVDX_* environment variables; GOVDX_HOME (default ./var) holds the "
    "catalog DB, Airflow home, landing zone, lakehouse and keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("ingest")(ingest_command)
app.command("demo")(demo_command)
app.command("serve")(serve_command)
app.command("report")(report_command)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(catalog_app, name="catalog")
app.add_typer(lineage_app, name="lineage")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(users_app, name="users")
app.add_typer(client_app, name="client")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(quality_app, name="quality")
catalog_app.command("publish")(publish_command)


def main() -> None:
    """Entry point of the ``govdx`` console script."""
    import warnings

    # pyspark (pulled in by great-expectations) warns about pandas 3 on import; not ours to fix
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyspark\..*")
    app()


__all__ = ["app", "main"]
