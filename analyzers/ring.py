"""A fixed ring of frame slots in shared memory: decoded frames cross processes without pickling.

The worker writes slot ``i`` and sends only ``(slot, seq)``; the reader copies the pixels out and
checks the slot's sequence number before and after, so a frame overwritten meanwhile is
reported as gone instead of read torn.  Bounded by construction: ``slots × slot_bytes``.
"""

from __future__ import annotations

from multiprocessing import shared_memory

import cv2
import numpy as np

HEADER = 4  # int64 per slot: seq, height, width, channels
MAX_W, MAX_H = 1920, 1088
DEFAULT_SLOT_BYTES = MAX_W * MAX_H * 3


class FrameRing:
    def __init__(
        self,
        name: str | None,
        slots: int,
        slot_bytes: int = DEFAULT_SLOT_BYTES,
        create: bool = False,
    ) -> None:
        self.slots = slots
        self.slot_bytes = slot_bytes
        size = slots * HEADER * 8 + slots * slot_bytes
        self.shm = shared_memory.SharedMemory(name=name, create=create, size=size if create else 0)
        self.header = np.ndarray((slots, HEADER), np.int64, self.shm.buf)
        if create:
            self.header[:] = 0
        self._data_off = slots * HEADER * 8
        self._next = 0
        self._seq = 0

    @property
    def name(self) -> str:
        return self.shm.name

    def _view(self, slot: int, shape: tuple[int, int, int]) -> np.ndarray:
        off = self._data_off + slot * self.slot_bytes
        return np.ndarray(shape, np.uint8, self.shm.buf, off)

    def fit(self, frame: np.ndarray) -> np.ndarray:
        """Downscale frames larger than a slot (keeps aspect)."""
        if frame.nbytes <= self.slot_bytes:
            return frame
        h, w = frame.shape[:2]
        r = (self.slot_bytes / frame.nbytes) ** 0.5 * 0.999
        return cv2.resize(frame, (int(w * r), int(h * r)), interpolation=cv2.INTER_AREA)

    def write(self, frame: np.ndarray) -> tuple[int, int]:
        """Writer side: copy a BGR frame into the next slot; returns (slot, seq)."""
        frame = self.fit(frame)
        slot = self._next
        self._next = (self._next + 1) % self.slots
        self._seq += 1
        self.header[slot, 0] = -1  # being written
        self._view(slot, frame.shape)[...] = frame  # type: ignore[arg-type]
        self.header[slot, 1:4] = frame.shape
        self.header[slot, 0] = self._seq
        return slot, self._seq

    def read(self, slot: int, seq: int) -> np.ndarray | None:
        """Reader side: a private copy of the frame, or None if the slot moved on."""
        if self.header[slot, 0] != seq:
            return None
        h, w, c = (int(v) for v in self.header[slot, 1:4])
        out = self._view(slot, (h, w, c)).copy()
        return out if self.header[slot, 0] == seq else None

    def close(self, unlink: bool = False) -> None:
        del self.header
        self.shm.close()
        if unlink:
            self.shm.unlink()
