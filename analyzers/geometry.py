"""Zones and lines in normalised image coordinates (0..1), so configs survive resolution changes."""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x1, y1, x2, y2 normalised


def point_in_polygon(p: Point, poly: Sequence[Point]) -> bool:
    """Even-odd ray casting; points on an edge count as inside for horizontal rays only."""
    x, y = p
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xc:
                inside = not inside
    return inside


def foot(box: Box) -> Point:
    """Where a person stands: bottom centre of the box."""
    return ((box[0] + box[2]) / 2, box[3])


def centre(box: Box) -> Point:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def _side(a: Point, b: Point, p: Point) -> float:
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def segments_cross(p1: Point, p2: Point, a: Point, b: Point) -> bool:
    """True when segment p1-p2 properly crosses segment a-b."""
    d1, d2 = _side(a, b, p1), _side(a, b, p2)
    d3, d4 = _side(p1, p2, a), _side(p1, p2, b)
    return (d1 > 0) != (d2 > 0) and d1 != 0 and d2 != 0 and (d3 > 0) != (d4 > 0)


def crosses_polyline(p1: Point, p2: Point, line: Sequence[Point], direction: str = "both") -> bool:
    """Whether p1→p2 crosses the polyline; ``direction`` restricts the sense, seen on the
    picture walking along the line from its first point: "left_to_right" or "right_to_left"."""
    for i in range(len(line) - 1):
        a, b = line[i], line[i + 1]
        if segments_cross(p1, p2, a, b):
            # image y points down: a negative side is on the left of a→b as seen on screen
            from_left = _side(a, b, p1) < 0
            if direction == "both" or from_left == (direction == "left_to_right"):
                return True
    return False


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
