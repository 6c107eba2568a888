"""PTZCmd: the 8-byte ``A50F01…`` front-end control command of GB/T 28181 §A.3, no I/O."""

from __future__ import annotations

from enum import IntEnum

PTZ_HEADER = 0xA5
PTZ_VERSION = 0x0
MAX_SPEED = 0xFF
MAX_ZOOM_SPEED = 0x0F


class PtzOp(IntEnum):
    """Byte 4 of the command (combinable direction/zoom bits, or one opcode)."""

    STOP = 0x00
    RIGHT = 0x01
    LEFT = 0x02
    DOWN = 0x04
    UP = 0x08
    ZOOM_IN = 0x10
    ZOOM_OUT = 0x20
    FOCUS_FAR = 0x41
    FOCUS_NEAR = 0x42
    IRIS_OPEN = 0x44
    IRIS_CLOSE = 0x48
    PRESET_SET = 0x81
    PRESET_CALL = 0x82
    PRESET_DELETE = 0x83


DIRECTIONS = {
    "stop": 0,
    "up": PtzOp.UP,
    "down": PtzOp.DOWN,
    "left": PtzOp.LEFT,
    "right": PtzOp.RIGHT,
    "upleft": PtzOp.UP | PtzOp.LEFT,
    "upright": PtzOp.UP | PtzOp.RIGHT,
    "downleft": PtzOp.DOWN | PtzOp.LEFT,
    "downright": PtzOp.DOWN | PtzOp.RIGHT,
}


def build(op: int, data1: int = 0, data2: int = 0, zoom: int = 0, address: int = 1) -> str:
    """Upper-case hex of the 8 bytes, checksum included."""
    for name, v, hi in (("data1", data1, 0xFF), ("data2", data2, 0xFF), ("zoom", zoom, 0x0F)):
        if not 0 <= v <= hi:
            raise ValueError(f"{name} {v} out of range 0..{hi}")
    if not 0 <= address <= 0xFFF:
        raise ValueError("address out of range")
    b1 = PTZ_HEADER
    b2 = (PTZ_VERSION << 4) | (((b1 >> 4) + (b1 & 0x0F) + PTZ_VERSION) % 16)
    b = [b1, b2, address & 0xFF, op & 0xFF, data1, data2, (zoom << 4) | ((address >> 8) & 0x0F)]
    b.append(sum(b) % 256)
    return bytes(b).hex().upper()


def move(direction: str, speed: int = 0x40, zoom: str | None = None, zoom_speed: int = 1) -> str:
    """Pan/tilt in a direction (or ``stop``), optionally zooming ``in``/``out`` at once."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    op = int(DIRECTIONS[direction])
    if direction == "stop" and zoom is None:
        return build(PtzOp.STOP)
    pan = tilt = speed if op else 0  # WVP puts the speed in both bytes
    zs = 0
    if zoom is not None:
        op |= PtzOp.ZOOM_IN if zoom == "in" else PtzOp.ZOOM_OUT
        zs = zoom_speed
    return build(op, pan, tilt, zs)


def zoom(direction: str, speed: int = 1) -> str:
    if direction not in ("in", "out"):
        raise ValueError("zoom is 'in' or 'out'")
    return build(PtzOp.ZOOM_IN if direction == "in" else PtzOp.ZOOM_OUT, 0, 0, speed)


def preset(action: str, number: int) -> str:
    ops = {"set": PtzOp.PRESET_SET, "call": PtzOp.PRESET_CALL, "delete": PtzOp.PRESET_DELETE}
    if action not in ops:
        raise ValueError("preset action is set, call or delete")
    if not 1 <= number <= 255:
        raise ValueError("preset number 1..255")
    return build(ops[action], 0, number)


def parse(hexcmd: str) -> dict[str, int]:
    """Decode and check a PTZCmd (raises ValueError on a bad header or checksum)."""
    raw = bytes.fromhex(hexcmd)
    if len(raw) != 8 or raw[0] != PTZ_HEADER:
        raise ValueError("not an A5 PTZ command")
    if sum(raw[:7]) % 256 != raw[7]:
        raise ValueError("bad checksum")
    return {
        "op": raw[3],
        "data1": raw[4],
        "data2": raw[5],
        "zoom": raw[6] >> 4,
        "address": raw[2] | ((raw[6] & 0x0F) << 8),
    }
