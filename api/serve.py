"""The uvicorn factory target of ``govdx serve`` (``uvicorn --factory api.serve:app``): builds
the app from ``GOVDX_*`` environment variables in each worker process."""

from __future__ import annotations

from fastapi import FastAPI


def app() -> FastAPI:
    """A new app over :class:`api.ApiSettings` read from the environment."""
    from api.config import ApiSettings
    from api.main import create_app

    return create_app(ApiSettings())
