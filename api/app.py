"""The FastAPI application: routers, health, docs and the web UI."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import TimeoutError as PoolTimeout

import vms
from vms.logging import get_logger, worth_logging
from vms.services import Services

from .audit import AuditTrail
from .health import HealthCheck
from .limits import RequestLimits
from .routers import (
    alarms,
    analyzers,
    audit,
    auth,
    cascade,
    cluster,
    contacts,
    device_alarms,
    devices,
    downloads,
    events_ws,
    gateways,
    geomap,
    ingest_push,
    installations,
    intake,
    live,
    orgs,
    playback,
    recordings,
    sensor_import,
    sensor_readings,
    sensors,
    sip,
    sip_config,
    streams,
    supervision,
    uplink,
    walls,
    warnings,
)
from .security import LoginLimiter, load_or_create_secret

STATIC_DIR = Path(__file__).parent / "static"
log = get_logger("api.app")


def create_app(services: Services) -> FastAPI:
    settings = services.settings
    app = FastAPI(
        title="GB28181 VMS",
        version=vms.__version__,
        description="GB28181 video surveillance and AI analytics server.",
    )
    app.state.services = services
    app.state.jwt_secret = load_or_create_secret(settings.auth.jwt_secret, settings.server.data_dir)
    app.state.login_limiter = LoginLimiter(
        settings.auth.login_max_failures, settings.auth.login_window_s
    )
    server = settings.server
    # Added first, so it runs inside the limits: a refused flood costs no audit writes.
    app.add_middleware(AuditTrail, db=services.db)  # type: ignore[arg-type] - pure ASGI
    app.add_middleware(
        RequestLimits,  # type: ignore[arg-type] - a pure ASGI middleware
        jwt_secret=app.state.jwt_secret,
        max_body_bytes=server.max_body_bytes,
        body_timeout_s=server.body_timeout_s,
        max_requests_per_user=server.max_requests_per_user,
        max_requests=server.max_requests,
    )
    health = app.state.health = HealthCheck(services)
    pool_timeouts = 0

    for module in (
        auth,
        audit,
        orgs,
        devices,
        device_alarms,
        alarms,
        live,
        uplink,
        events_ws,
        recordings,
        playback,
        downloads,
        analyzers,
        sip,
        sip_config,
        cascade,
        streams,
        warnings,
        contacts,
        gateways,
        installations,
        sensors,
        sensor_import,
        sensor_readings,
        ingest_push,
        intake,
        supervision,
        walls,
        geomap,
        cluster,
    ):
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(request: Request, exc: PoolTimeout) -> JSONResponse:
        nonlocal pool_timeouts
        pool_timeouts += 1
        if worth_logging(pool_timeouts):
            log.warning("database pool exhausted: requests refused", refused=pool_timeouts)
        return JSONResponse(
            {"detail": "database busy; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """On the event loop, with its own database connection: answers under any API load."""
        body, status = await health.report()
        return JSONResponse(body, status_code=status)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(STATIC_DIR / "index.html")

    return app
