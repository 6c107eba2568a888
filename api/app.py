"""The FastAPI application: routers, health, docs and the web UI."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

import vms
from vms.services import Services

from .routers import (
    alarms,
    analyzers,
    auth,
    cascade,
    contacts,
    device_alarms,
    devices,
    downloads,
    events_ws,
    gateways,
    ingest_push,
    installations,
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
    warnings,
)
from .security import LoginLimiter, load_or_create_secret

STATIC_DIR = Path(__file__).parent / "static"


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

    for module in (
        auth,
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
        supervision,
    ):
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with services.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - health reports any failure
            checks["database"] = f"error: {exc.__class__.__name__}"
        try:
            services.objects.check()
            checks["objects"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["objects"] = f"error: {exc.__class__.__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "version": vms.__version__, "checks": checks},
            status_code=200 if ok else 503,
        )

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(STATIC_DIR / "index.html")

    return app
