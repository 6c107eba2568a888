"""``/healthz`` that answers while the API is saturated.

A health probe queued behind busy handlers (the thread pool, the database pool)
reports a flood as an outage: monitors restart a node that was only busy.  So the
check runs on the event loop, its database ping on a connection of its own
(:meth:`storage.db.Database.ping`) in threads of its own; concurrent probes share
one check (a flood of probes costs one), and a check that hangs is reported after
``TIMEOUT_S`` instead of waited for.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import vms
from vms.services import Services

TIMEOUT_S = 2.0


class HealthCheck:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="healthz")
        self._running: asyncio.Future[dict[str, str]] | None = None

    async def report(self) -> tuple[dict[str, Any], int]:
        """(body, status): 200 when every check is ok, else 503."""
        checks = await self._checks()
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "degraded", "version": vms.__version__, "checks": checks}
        return body, 200 if ok else 503

    async def _checks(self) -> dict[str, str]:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), TIMEOUT_S)
        except TimeoutError:
            return {"database": "error: timeout", "objects": "error: timeout"}

    async def _run(self) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        db = loop.run_in_executor(self._executor, self._check, self.services.db.ping)
        objects = loop.run_in_executor(self._executor, self._check, self.services.objects.check)
        return {"database": await db, "objects": await objects}

    @staticmethod
    def _check(fn: Any) -> str:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - health reports any failure
            return f"error: {exc.__class__.__name__}"
        return "ok"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
