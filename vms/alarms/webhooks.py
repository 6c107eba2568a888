"""Best-effort JSON POSTs of alarm events to configured webhooks (chat bots, SMS gateways...).

Separate from the uplink on purpose: not durable, bounded queue, a few retries, never
blocks alarm handling.  The provincial record of truth goes through the outbox.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from vms.logging import get_logger
from vms.tasks import cancel_task

log = get_logger("vms.alarms.webhooks")

RETRY_DELAYS_S = (0.5, 2.0, 8.0)  # after the first try


class WebhookNotifier:
    name = "alarm-webhooks"

    def __init__(
        self, urls: list[str], token: str = "", timeout_s: float = 5.0, queue_size: int = 1000
    ) -> None:
        self.urls = list(urls)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def notify(self, kind: str, data: dict[str, Any]) -> None:
        if not self.urls:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((kind, data))

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        for delay in (0.0, *RETRY_DELAYS_S):
            if delay:
                await asyncio.sleep(delay)
            try:
                resp = await self._client.post(url, json=body)
                if 200 <= resp.status_code < 300:
                    self.delivered += 1
                    return
                error = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"
            log.info("webhook attempt failed", url=url, error=error)
        self.failed += 1
        log.warning("webhook gave up", url=url, kind=body.get("kind"))

    async def _run(self) -> None:
        sem = asyncio.Semaphore(16)  # a dead webhook holds at most 16 events in retry

        async def send(body: dict[str, Any]) -> None:
            async with sem:
                await asyncio.gather(*(self._post(u, body) for u in self.urls))

        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                kind, data = await self._queue.get()
                await sem.acquire()
                sem.release()
                task = asyncio.create_task(send({"kind": kind, **data}))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()

    async def start(self) -> None:
        if self.urls:
            self._task = asyncio.create_task(self._run(), name="alarm-webhooks")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await self._client.aclose()
