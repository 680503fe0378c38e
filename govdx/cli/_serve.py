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
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            envvar="GOVDX_TRUSTED_PROXIES",
            help="Address of a reverse proxy (e.g. nginx) whose X-Forwarded-For names the "
            "client; repeatable. Without it every request behind the proxy shares the proxy's "
            "address, and one person's failed logins lock every user out of that address. "
            "Never a proxy clients can bypass.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (接口服务): /api/v1, CKAN /api/3/action, DCAT, /docs, /healthz.

    Behind a reverse proxy pass --trusted-proxy PROXY_IP (GOVDX_TRUSTED_PROXIES, comma
    separated): uvicorn then takes the client address from X-Forwarded-For of requests from
    that address only (its ``forwarded_allow_ips``), and the per-address login limit
    (GOVDX_LOGIN_FAILURES_PER_IP) counts real clients. Example:
    govdx serve --host 127.0.0.1 --trusted-proxy 127.0.0.1
    """
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
        **proxy_options(trusted_proxy),
    )


def proxy_options(trusted: list[str] | None) -> dict:
    """uvicorn's proxy options for the trusted proxy addresses (none: headers ignored).

    Args:
        trusted: addresses or CIDR ranges; items may hold several, comma separated (the
            environment variable's form).

    Returns:
        ``{"proxy_headers": bool, "forwarded_allow_ips": str | None}`` for ``uvicorn.run``.
    """
    ips = [x.strip() for item in trusted or [] for x in item.split(",") if x.strip()]
    if not ips:
        return {"proxy_headers": False, "forwarded_allow_ips": None}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(ips)}
