"""Local spool for alarm pictures the object store could not take.

When the store is down the alarm is committed anyway and its picture waits here
(``data_dir/spool/alarm-images``) until :meth:`ImageSpool.flush` uploads it.  File
names encode the object key, so the spool needs no index and survives restarts.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from storage.objects import ObjectStore, ObjectStoreError, check_key
from vms.logging import get_logger
from vms.tasks import cancel_task

log = get_logger("vms.alarms.spool")

SEP = "~"  # object keys never contain it (storage.objects.KEY_RE)


class ImageSpool:
    def __init__(self, root: Path, objects: ObjectStore, retry_s: float = 5.0) -> None:
        self.root = Path(root)
        self.objects = objects
        self.retry_s = retry_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def path_for(self, key: str) -> Path:
        return self.root / check_key(key).replace("/", SEP)

    def put(self, key: str, data: bytes) -> None:
        """Keep the picture on local disk (atomic write) and wake the uploader."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._wake.set()

    def pending(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name.replace(SEP, "/") for p in self.root.iterdir() if not p.name.startswith(".")
        )

    def get(self, key: str) -> bytes | None:
        path = self.path_for(key)
        return path.read_bytes() if path.is_file() else None

    def flush(self) -> int:
        """Upload every spooled picture; stop at the first store failure.  Returns uploads."""
        done = 0
        for key in self.pending():
            path = self.path_for(key)
            try:
                self.objects.put(key, path.read_bytes(), "image/jpeg")
            except (ObjectStoreError, OSError) as exc:
                log.warning("spooled image upload failed", key=key, error=str(exc))
                break
            path.unlink(missing_ok=True)
            done += 1
        if done:
            log.info("spooled images uploaded", count=done, left=len(self.pending()))
        return done

    async def run(self) -> None:
        while True:
            if self.pending():
                await asyncio.to_thread(self.flush)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.retry_s)
            except TimeoutError:
                pass

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="alarm-image-spool")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
