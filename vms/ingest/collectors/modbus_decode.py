"""Modbus register words ⇄ values, and the grouping of points into block reads.

Pure code (no I/O): the collector reads blocks and hands the words here; the simulated
gateway (``vms sim-sensors``) encodes its values with the inverse.  A register is a
16-bit word as the protocol carries it (big-endian on the wire); ``byte_order`` says
whether the device swapped the two bytes inside each word, ``word_order`` which word of
a 32-bit value comes first ("big": high word first, the Modbus convention; "little":
low word first, what many PLCs call "CDAB").
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from vms.ingest.gateway_config import ModbusSource

MAX_BITS = 2000  # coils / discrete inputs in one request (Modbus spec, FC 1 and 2)
MAX_GAP = 8  # unused registers a block may span between two points before it is split

STRUCT_FORMAT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}
FUNCTION_CODES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


class DecodeError(ValueError):
    """The words do not make a usable value (too few, NaN, infinite)."""


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def decode_registers(words: Sequence[int], source: ModbusSource) -> float:
    """``words`` (at least ``source.width`` of them) → ``raw * scale + offset``."""
    if source.type == "bool":
        raise DecodeError("bool points are read as bits, not registers")
    width = source.width
    if len(words) < width:
        raise DecodeError(f"{source.type} needs {width} registers, got {len(words)}")
    chunk = [int(w) & 0xFFFF for w in words[:width]]
    if source.byte_order == "little":
        chunk = [_swap(w) for w in chunk]
    if source.word_order == "little":
        chunk.reverse()
    data = b"".join(w.to_bytes(2, "big") for w in chunk)
    (raw,) = struct.unpack(STRUCT_FORMAT[source.type], data)
    if not math.isfinite(raw):
        raise DecodeError(f"device sent {raw} for a {source.type}")
    if source.type == "float32":
        raw = _shortest_float32(raw, data)
    return raw * source.scale + source.offset


def _shortest_float32(raw: float, data: bytes) -> float:
    """The shortest decimal that is the same float32: 9.153, not 9.152999877929688."""
    for digits in range(6, 9):
        candidate = float(f"{raw:.{digits}g}")
        if struct.pack(">f", candidate) == data:
            return candidate
    return raw


def decode_bit(bit: bool, source: ModbusSource) -> float:
    """A coil or discrete input → 0/1, through ``scale``/``offset`` (-1/1 inverts a contact)."""
    return (1.0 if bit else 0.0) * source.scale + source.offset


def encode_value(value: float, source: ModbusSource) -> list[int]:
    """The inverse of :func:`decode_registers`: the words a device holds for ``value``."""
    if source.type == "bool":
        raise ValueError("bool points are bits; use encode_bit")
    if source.scale == 0:
        raise ValueError("scale 0 cannot be inverted")
    raw: float | int = (value - source.offset) / source.scale
    if source.type != "float32":
        raw = round(raw)
        lo, hi = _int_limits(source.type)
        raw = min(max(raw, lo), hi)
    data = struct.pack(STRUCT_FORMAT[source.type], raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if source.word_order == "little":
        words.reverse()
    if source.byte_order == "little":
        words = [_swap(w) for w in words]
    return words


def encode_bit(value: float, source: ModbusSource) -> bool:
    if source.scale == 0:
        raise ValueError("scale 0 cannot be inverted")
    return round((value - source.offset) / source.scale) != 0


def _int_limits(kind: str) -> tuple[int, int]:
    bits = 16 if kind.endswith("16") else 32
    if kind.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


@dataclass(frozen=True)
class BlockItem:
    """One point inside a block read."""

    tag: str
    source: ModbusSource


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (or bits) from ``start`` of one unit and function."""

    unit_id: int
    function: str  # holding, input, coil, discrete
    start: int
    count: int
    items: tuple[BlockItem, ...]

    @property
    def bits(self) -> bool:
        return self.function in ("coil", "discrete")

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.function]

    def decode(self, data: Sequence[int] | Sequence[bool]) -> dict[str, float | DecodeError]:
        """Each item's value (or why it has none) from the block's words or bits."""
        out: dict[str, float | DecodeError] = {}
        for item in self.items:
            at = item.source.address - self.start
            width = 1 if self.bits else item.source.width
            if at + width > len(data):
                out[item.tag] = DecodeError(f"short answer: {len(data)} of {self.count}")
                continue
            try:
                if self.bits:
                    out[item.tag] = decode_bit(bool(data[at]), item.source)
                else:
                    out[item.tag] = decode_registers(data[at : at + width], item.source)  # type: ignore[arg-type]
            except DecodeError as exc:
                out[item.tag] = exc
        return out


def plan_blocks(
    items: Sequence[tuple[int, BlockItem]], max_block: int, max_gap: int = MAX_GAP
) -> list[Block]:
    """Group ``(unit_id, item)`` pairs into as few reads as possible.

    Points of one unit and function are sorted by address and joined while the read stays
    within ``max_block`` registers (``MAX_BITS`` bits for coils/discrete inputs, at most
    ``max_block * 16``) and the hole between two points is at most ``max_gap``
    (``max_gap = 0``: only adjacent or overlapping points share a read).
    """
    groups: dict[tuple[int, str], list[BlockItem]] = {}
    for unit_id, item in items:
        groups.setdefault((unit_id, item.source.function), []).append(item)
    blocks: list[Block] = []
    for (unit_id, function), members in sorted(groups.items()):
        bits = function in ("coil", "discrete")
        limit = min(MAX_BITS, max_block * 16) if bits else max_block
        gap = max_gap * 16 if bits else max_gap
        members.sort(key=lambda it: (it.source.address, it.tag))
        current: list[BlockItem] = []
        start = end = 0  # end: one past the last register (bit) in the block
        for item in members:
            width = 1 if bits else item.source.width
            first, last = item.source.address, item.source.address + width
            if current and first - end <= gap and max(end, last) - start <= limit:
                current.append(item)
                end = max(end, last)
                continue
            if current:
                blocks.append(Block(unit_id, function, start, end - start, tuple(current)))
            current, start, end = [item], first, last
        if current:
            blocks.append(Block(unit_id, function, start, end - start, tuple(current)))
    return blocks
