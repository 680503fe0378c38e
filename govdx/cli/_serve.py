"""``govdx serve``: run the HTTP API (FastAPI app of :func:`api.create_app`) under uvicorn.

Mount with ``app.command("serve")(serve_command)``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from govdx.cli._common import fail


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker processes (rate limits and metrics are per process unless "
            "GOVDX_RATE_LIMIT_STORAGE points at a shared store).",
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Serve the HTTP API (接口服务): /api/v1, CKAN /api/3/action, DCAT, /docs, /healthz."""
    import uvicorn

    from api.config import ApiSettings
    from govdx import GovdxError

    try:
        ApiSettings().ensure_home()  # fail early on bad settings
    except (GovdxError, ValueError) as exc:
        fail(exc)
    uvicorn.run(
        "api.serve:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=False,
    )
