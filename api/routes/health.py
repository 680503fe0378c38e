"""``/healthz`` (liveness and catalog DB reachability) and ``/metrics`` (Prometheus text
format), both anonymous. Metrics carry route templates, methods, statuses and latencies only:
no user, dataset code or job id."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import PublicRoute, SessionDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Health (健康检查)")
def healthz(_: PublicRoute, session: SessionDep) -> dict[str, str]:
    """``{"status": "ok"}`` when the catalog DB answers."""
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(_: PublicRoute, state: StateDep) -> Response:
    """Request counts and latency histograms of this process (Prometheus exposition format)."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
