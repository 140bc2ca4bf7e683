"""Mask <-> polygon outlines, traced along pixel edges (no OpenCV).

Polygons are flat ``[x0, y0, x1, y1, ...]`` lists in original-image pixels,
pixel ``(row r, column c)`` covering ``[c, c + 1] x [r, r + 1]``. The tracer
is written here rather than taken from OpenCV: ``cv2`` arrives only as a
dependency of label-studio-sdk, and the base install used by thin clients
must not need it. Tracing along pixel edges rather than through pixel
centres (as ``cv2.findContours`` does) also makes polygons exact:
:func:`from_polygons` restores the very mask, one-pixel-wide parts and holes
included. Outer boundaries run clockwise on screen (y down), holes
counter-clockwise; diagonal neighbours belong to one outline (8-connected
foreground). :func:`from_polygons` fills with the non-zero winding rule at
pixel centres, so holes stay holes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from backend.api.errors import InvalidInput
from backend.formats.mask_arrays import as_mask, size_pair

# --- polygons -----------------------------------------------------------------------------------

# Direction codes: 0 = +x (right), 1 = +y (down), 2 = -x (left), 3 = -y (up).


def to_polygons(mask: Any, *, tolerance: float = 0.0, holes: bool = True) -> list[list[float]]:
    """Outlines of a mask as flat ``[x0, y0, x1, y1, ...]`` polygons.

    Every boundary between foreground and background pixels becomes one
    closed polygon through pixel corners (holes included, as rings of the
    opposite direction); only corners are kept.

    Args:
        mask: ``HxW`` mask.
        tolerance: Douglas-Peucker simplification distance in pixels; 0 keeps
            the exact outline. Rings left with fewer than 3 vertices are dropped.
        holes: Keep the rings around holes. Formats whose polygons are all
            filled (Label Studio, COCO) want ``holes=False``.

    Returns:
        Polygons in original-image pixels, outer boundaries clockwise on screen.
    """
    m = as_mask(mask)
    x0, y0, dirs = _boundary_edges(m)
    if x0.size == 0:
        return []
    polygons: list[list[float]] = []
    for ring in _rings(x0, y0, dirs, width=m.shape[1]):
        if not holes and _signed_area(ring) < 0:
            continue
        if tolerance > 0:
            ring = _simplify_ring(ring, tolerance)
        if len(ring) >= 6:
            polygons.append(ring)
    return polygons


_STEP = ((1, 0), (0, 1), (-1, 0), (0, -1))
"""``(dx, dy)`` of one edge in each direction code."""


def _boundary_edges(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unit edge between a foreground and a background pixel, foreground on its right.

    Returns:
        ``(x, y, direction)`` of each edge's start corner and its direction
        code, grouped by direction.
    """
    p = np.pad(m, 1)
    core = p[1:-1, 1:-1]
    # (row, col) of pixels with background above / right / below / left; each edge keeps foreground on its right.
    sides = (core & ~p[:-2, 1:-1], core & ~p[1:-1, 2:], core & ~p[2:, 1:-1], core & ~p[1:-1, :-2])
    start_offsets = ((0, 0), (1, 0), (1, 1), (0, 1))  # (dx, dy) of the edge's start corner
    xs, ys, dirs = [], [], []
    for d, side in enumerate(sides):
        r, c = np.nonzero(side)
        xs.append(c + start_offsets[d][0])
        ys.append(r + start_offsets[d][1])
        dirs.append(np.full(r.size, d))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(dirs)


def _rings(x0: np.ndarray, y0: np.ndarray, dirs: np.ndarray, *, width: int) -> Iterator[list[float]]:
    """The closed outlines the edges form, each as the flat list of its corners.

    Each edge links to the edge leaving its end corner; at a saddle corner
    (two leaving edges) the outline turns left, which keeps diagonal
    neighbours in one outline.
    """
    dx, dy = np.array(_STEP).T
    stride = width + 1
    start = y0 * stride + x0
    end = (y0 + dy[dirs]) * stride + x0 + dx[dirs]
    order = np.argsort(start, kind="stable")
    lo = np.searchsorted(start[order], end, "left")
    first = order[lo]
    second = order[np.minimum(lo + 1, order.size - 1)]
    saddle = np.searchsorted(start[order], end, "right") - lo == 2
    take_second = saddle & (dirs[second] == (dirs + 3) % 4)
    nxt = np.where(take_second, second, first).tolist()
    corner = (dirs[np.asarray(nxt)] != dirs).tolist()  # the end of edge e is a corner
    ex, ey = (x0 + dx[dirs]).tolist(), (y0 + dy[dirs]).tolist()
    seen = bytearray(len(nxt))
    for e0 in range(len(nxt)):
        if seen[e0]:
            continue
        ring: list[float] = []
        e = e0
        while not seen[e]:
            seen[e] = 1
            if corner[e]:
                ring += (float(ex[e]), float(ey[e]))
            e = nxt[e]
        yield ring


def from_polygons(polygons: Any, height: int, width: int) -> np.ndarray:
    """Fill polygons into an ``HxW`` bool mask (non-zero winding at pixel centres).

    Args:
        polygons: A list of polygons, each a flat ``[x0, y0, x1, y1, ...]``
            list or a list of ``[x, y]`` pairs, in original-image pixels.
        height: Mask height.
        width: Mask width.
    """
    h, w = size_pair((height, width))
    if not isinstance(polygons, (list, tuple)):
        raise InvalidInput("polygons must be a list of polygons, each [x0, y0, x1, y1, ...] or [[x, y], ...]")
    rings = [_ring(poly) for poly in polygons]
    acc = np.zeros((h, w + 1), np.int32)
    if rings:
        a = np.concatenate(rings)
        lengths = np.array([len(r) for r in rings])
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)
        i = np.arange(len(a))
        nxt = np.where(i + 1 == first + np.repeat(lengths, lengths), first, i + 1)  # each ring closes
        b = a[nxt]
        (xa, ya), (xb, yb) = a.T, b.T
        sign = np.sign(yb - ya).astype(np.int32)  # +1 downwards, -1 upwards, 0 horizontal (no crossing)
        lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
        r0 = np.clip(np.ceil(lo - 0.5), 0, h).astype(np.int64)  # rows whose centre r + 0.5 lies in [lo, hi)
        r1 = np.clip(np.ceil(hi - 0.5), 0, h).astype(np.int64)
        n = np.where(sign != 0, r1 - r0, 0)
        e = np.repeat(np.arange(len(a)), n)
        rows = r0[e] + np.arange(e.size) - np.repeat(np.cumsum(n) - n, n)
        x = xa[e] + (rows + 0.5 - ya[e]) / (yb[e] - ya[e]) * (xb[e] - xa[e])
        cols = np.clip(np.floor(x - 0.5) + 1, 0, w).astype(np.int64)  # first pixel whose centre is right of x
        np.add.at(acc, (rows, cols), sign[e])
    return np.ascontiguousarray(np.cumsum(acc, axis=1)[:, :w] != 0)


def _ring(poly: Any) -> np.ndarray:
    """One polygon as an ``Nx2`` float array, validated."""
    try:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"a polygon must hold numbers as [x0, y0, x1, y1, ...] or [[x, y], ...]: {exc}"
        ) from exc
    if len(pts) < 3 or not np.isfinite(pts).all():
        raise InvalidInput("a polygon needs at least 3 finite vertices")
    return pts


def _signed_area(ring: list[float]) -> float:
    """Shoelace area of a flat ring; positive when clockwise on screen (y down)."""
    x, y = np.asarray(ring).reshape(-1, 2).T
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2


def _simplify_ring(ring: list[float], tolerance: float) -> list[float]:
    """Douglas-Peucker on a closed ring, anchored at vertex 0 and the vertex farthest from it."""
    pts = np.asarray(ring).reshape(-1, 2)
    if len(pts) <= 3:
        return ring
    far = int(np.argmax(((pts - pts[0]) ** 2).sum(axis=1)))
    keep = np.zeros(len(pts) + 1, bool)
    keep[[0, far, len(pts)]] = True
    closed = np.vstack([pts, pts[:1]])
    stack = [(0, far), (far, len(pts))]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        a, b = closed[i], closed[j]
        seg = closed[i + 1 : j] - a
        ab = b - a
        dist = np.abs(ab[0] * seg[:, 1] - ab[1] * seg[:, 0]) / max(np.hypot(*ab), 1e-12)
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return closed[:-1][keep[:-1]].ravel().tolist()
