"""A camera's address on this platform: (device ID, channel ID), never the channel ID alone.

GB/T 28181 means channel codes to be unique, but a device chooses the codes its catalog
lists, so two NVRs (or a hostile one) can list the same code.  Streams, recordings,
analysis and live views therefore name a camera through the device that listed it: one
device's catalog cannot reach another device's camera.  Both parts are validated 20-digit
codes, so a ref is also safe in a file name or an object key.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ids

SLUG_SEPARATOR = "_"


@dataclass(frozen=True, slots=True, order=True)
class ChannelRef:
    device_id: str
    channel_id: str

    def __post_init__(self) -> None:
        for name in ("device_id", "channel_id"):
            value = getattr(self, name)
            if not ids.is_gb_id(value):
                raise ids.InvalidGbId(f"{name} is not a 20-digit GB28181 id: {str(value)[:40]!r}")

    def __str__(self) -> str:
        return f"{self.device_id}/{self.channel_id}"

    @property
    def slug(self) -> str:
        """``<device>_<channel>``: digits and one underscore, for file names and object keys."""
        return f"{self.device_id}{SLUG_SEPARATOR}{self.channel_id}"

    @classmethod
    def from_slug(cls, text: str) -> ChannelRef:
        """The ref of a :attr:`slug`; :class:`ids.InvalidGbId` for anything else."""
        device_id, sep, channel_id = text.partition(SLUG_SEPARATOR)
        if not sep:
            raise ids.InvalidGbId(f"not a channel slug: {text[:60]!r}")
        return cls(device_id, channel_id)
