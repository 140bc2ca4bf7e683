"""Mask codecs: the one place where ``HxW`` bool masks become bytes or JSON.

Formats (``MASK_FORMATS``):

* ``"coco_rle"``: COCO compressed RLE via pycocotools,
  ``{"size": [h, w], "counts": str}``; runs are counted **column-major**.
  Decoding also accepts ``counts`` as bytes or as a list of ints
  (uncompressed RLE).
* ``"brush_rle"``: Label Studio's brush RLE via label-studio-sdk's converter,
  a list of ints (bytes of a bit-packed run-length code) over the
  **row-major** RGBA pixels of the mask, painted pixels ``(255, 255, 255, 255)``.
  A different format from COCO RLE: the two never mix.
* ``"png"``: lossless 1-bit PNG bytes.
* ``"polygons"``: outlines as a list of flat ``[x0, y0, x1, y1, ...]`` lists
  in original-image pixels, pixel ``(row r, column c)`` covering
  ``[c, c + 1] x [r, r + 1]`` (see ``backend.formats.coordinates``).

Polygons are traced by a small crack-following tracer written here, not by
OpenCV: ``cv2`` arrives only as a dependency of label-studio-sdk (the
``labelstudio`` extra), and the base install used by thin clients must not
need it. Tracing along pixel edges rather than through pixel centres (as
``cv2.findContours`` does) also makes polygons exact: ``from_polygons``
restores the very mask, one-pixel-wide parts and holes included. Outer
boundaries run clockwise on screen (y down), holes counter-clockwise;
diagonal neighbours belong to one outline (8-connected foreground).
``from_polygons`` fills with the non-zero winding rule at pixel centres, so
holes stay holes and overlapping outlines of the same direction merge.

This module imports neither torch nor label-studio-sdk at import time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from backend.errors import InvalidInput
from backend.formats.images import DEFAULT_MAX_PIXELS, check_pixel_limit, open_image

MASK_FORMATS = ("coco_rle", "brush_rle", "png", "polygons")


def as_mask(mask: Any) -> np.ndarray:
    """Validate a mask and return it as a C-contiguous ``HxW`` bool array.

    Args:
        mask: ``HxW`` array: bool, integers (non-zero is foreground) or
            floats holding only 0 and 1.

    Raises:
        InvalidInput: Wrong number of dimensions, empty, or non-binary floats.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidInput(f"a mask must be a non-empty HxW array, got shape {arr.shape}")
    if arr.dtype == bool:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu":
        return arr != 0
    if arr.dtype.kind == "f" and np.isin(arr, (0.0, 1.0)).all():
        return arr == 1.0
    raise InvalidInput(
        f"a mask must be bool, integer or 0/1 float, got {arr.dtype} with other values; "
        "threshold it first (for logits: mask = logits > 0)"
    )


# --- COCO RLE -----------------------------------------------------------------------------------


def to_coco_rle(mask: Any) -> dict[str, Any]:
    """``HxW`` mask -> ``{"size": [h, w], "counts": str}`` (column-major runs)."""
    rle = coco_mask.encode(np.asfortranarray(as_mask(mask), dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def from_coco_rle(rle: Any, height: int | None = None, width: int | None = None) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) -> ``HxW`` bool mask.

    Args:
        rle: ``{"size": [h, w], "counts": str | bytes | list[int]}``.
        height: Expected height, checked when given.
        width: Expected width, checked when given.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise InvalidInput('COCO RLE must be a dict {"size": [h, w], "counts": ...}')
    h, w = _size_pair(rle["size"])
    _check_size((h, w), height, width)
    counts = rle["counts"]
    if isinstance(counts, list):
        try:
            runs = [int(c) for c in counts]
        except (TypeError, ValueError) as exc:
            raise InvalidInput("uncompressed COCO RLE counts must be a list of ints") from exc
    elif isinstance(counts, (str, bytes)):
        try:
            counts = counts.encode("ascii") if isinstance(counts, str) else counts
        except UnicodeEncodeError as exc:
            raise InvalidInput("COCO RLE counts must be ASCII") from exc
        runs = _parse_coco_counts(counts)
    else:
        raise InvalidInput("COCO RLE counts must be a string or a list of ints")
    # pycocotools returns uninitialised memory for counts that do not cover the mask: check first.
    if any(c < 0 for c in runs) or sum(runs) != h * w:
        raise InvalidInput(f"COCO RLE counts do not add up to size {h}x{w} = {h * w} pixels")
    rle = (
        coco_mask.frPyObjects({"size": [h, w], "counts": runs}, h, w)
        if isinstance(counts, list)
        else {"size": [h, w], "counts": counts}
    )
    return np.ascontiguousarray(coco_mask.decode(rle).astype(bool))


def _parse_coco_counts(counts: bytes) -> list[int]:
    """Run lengths of a compressed COCO counts string (pycocotools' ``rleFrString``)."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise InvalidInput("COCO RLE counts string ends in the middle of a number")
            c = counts[p] - 48
            if not 0 <= c < 64:
                raise InvalidInput(f"COCO RLE counts contain an invalid character {chr(counts[p])!r}")
            if k > 12:  # pycocotools keeps 64-bit counts; longer numbers are garbage (and slow to build)
                raise InvalidInput("COCO RLE counts contain an impossibly long number")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


# --- Label Studio brush RLE ---------------------------------------------------------------------


def to_brush_rle(mask: Any) -> list[int]:
    """``HxW`` mask -> Label Studio brush RLE (row-major RGBA, painted = 255)."""
    from label_studio_sdk.converter.brush import mask2rle

    return [int(v) for v in mask2rle(as_mask(mask).astype(np.uint8) * 255)]


def from_brush_rle(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> ``HxW`` bool mask (painted where alpha > 0).

    Args:
        rle: The ``value.rle`` list of a ``brushlabels`` result.
        height: ``original_height`` of the result.
        width: ``original_width`` of the result.
    """
    from label_studio_sdk.converter.brush import decode_rle

    h, w = _size_pair((height, width))
    try:
        data = bytes(int(v) for v in rle)
        if len(data) < 8 or int.from_bytes(data[:4], "big") != h * w * 4:
            raise ValueError("its pixel count does not match")
        flat = decode_rle(data)
    except (ValueError, TypeError, IndexError) as exc:
        raise InvalidInput(
            f"invalid brush RLE for a {w}x{h} image ({exc}); expected a list of bytes 0..255 "
            "encoding width*height*4 RGBA values"
        ) from exc
    return np.ascontiguousarray(flat.reshape(h, w, 4)[:, :, 3] > 0)


# --- PNG ----------------------------------------------------------------------------------------


def to_png(mask: Any) -> bytes:
    """``HxW`` mask -> 1-bit PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(as_mask(mask)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def from_png(
    data: bytes, height: int | None = None, width: int | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Mask image bytes -> ``HxW`` bool mask.

    Foreground is: non-zero for 1-bit, grey, 16-bit and palette images (palette
    index 0 is background); alpha > 0 for images with a partly transparent
    alpha channel; any non-zero colour channel otherwise.

    Args:
        data: PNG bytes (any format :mod:`backend.formats.images` opens is accepted).
        height: Expected height, checked when given.
        width: Expected width, checked when given.
        max_pixels: Largest accepted ``width * height``.
    """
    img = open_image(data, max_pixels=max_pixels)
    _check_size((img.height, img.width), height, width)
    try:
        img.load()
    except Exception as exc:  # truncated / corrupt stream
        raise InvalidInput(f"cannot decode the mask image ({exc})") from exc
    arr = np.asarray(img)
    if arr.ndim == 2:
        return np.ascontiguousarray(arr != 0)
    has_alpha = img.getbands()[-1] == "A"
    if has_alpha and arr[:, :, -1].min() < 255:
        return np.ascontiguousarray(arr[:, :, -1] > 0)
    colour = arr[:, :, :-1] if has_alpha else arr
    return np.ascontiguousarray((colour != 0).any(axis=2))


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
    h, w = m.shape
    p = np.pad(m, 1)
    core = p[1:-1, 1:-1]
    # (row, col) of pixels with background above / right / below / left; each edge keeps foreground on its right.
    sides = (core & ~p[:-2, 1:-1], core & ~p[1:-1, 2:], core & ~p[2:, 1:-1], core & ~p[1:-1, :-2])
    start_offsets = ((0, 0), (1, 0), (1, 1), (0, 1))  # (dx, dy) of the edge's start corner
    step = ((1, 0), (0, 1), (-1, 0), (0, -1))
    xs, ys, dirs = [], [], []
    for d, side in enumerate(sides):
        r, c = np.nonzero(side)
        xs.append(c + start_offsets[d][0])
        ys.append(r + start_offsets[d][1])
        dirs.append(np.full(r.size, d))
    x0, y0, dirs_all = np.concatenate(xs), np.concatenate(ys), np.concatenate(dirs)
    if x0.size == 0:
        return []
    dx, dy = np.array(step).T
    stride = w + 1
    start = y0 * stride + x0
    end = (y0 + dy[dirs_all]) * stride + x0 + dx[dirs_all]
    # Link each edge to the edge leaving its end corner; at a saddle corner (two leaving edges) turn left,
    # which keeps diagonal neighbours in one outline.
    order = np.argsort(start, kind="stable")
    lo = np.searchsorted(start[order], end, "left")
    first = order[lo]
    second = order[np.minimum(lo + 1, order.size - 1)]
    saddle = np.searchsorted(start[order], end, "right") - lo == 2
    take_second = saddle & (dirs_all[second] == (dirs_all + 3) % 4)
    nxt = np.where(take_second, second, first).tolist()
    corner = (dirs_all[np.asarray(nxt)] != dirs_all).tolist()  # the end of edge e is a corner
    ex, ey = (x0 + dx[dirs_all]).tolist(), (y0 + dy[dirs_all]).tolist()
    seen = bytearray(len(nxt))
    polygons: list[list[float]] = []
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
        if not holes and _signed_area(ring) < 0:
            continue
        if tolerance > 0:
            ring = _simplify_ring(ring, tolerance)
        if len(ring) >= 6:
            polygons.append(ring)
    return polygons


def from_polygons(polygons: Any, height: int, width: int) -> np.ndarray:
    """Fill polygons into an ``HxW`` bool mask (non-zero winding at pixel centres).

    Args:
        polygons: A list of polygons, each a flat ``[x0, y0, x1, y1, ...]``
            list or a list of ``[x, y]`` pairs, in original-image pixels.
        height: Mask height.
        width: Mask width.
    """
    h, w = _size_pair((height, width))
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


# --- dispatch -----------------------------------------------------------------------------------


def encode_mask(mask: Any, fmt: str) -> Any:
    """Encode an ``HxW`` mask in one of ``MASK_FORMATS``.

    Returns:
        ``coco_rle``: dict; ``brush_rle``: list of ints; ``png``: bytes;
        ``polygons``: list of flat coordinate lists.
    """
    encoders = {"coco_rle": to_coco_rle, "brush_rle": to_brush_rle, "png": to_png, "polygons": to_polygons}
    return encoders[_check_format(fmt)](mask)


def decode_mask(data: Any, fmt: str, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Decode a mask in one of ``MASK_FORMATS`` to an ``HxW`` bool array.

    Args:
        data: The encoded mask, as :func:`encode_mask` returns it.
        fmt: One of ``MASK_FORMATS``.
        height: Image height; required for ``brush_rle`` and ``polygons``,
            checked against the data for ``coco_rle`` and ``png``.
        width: Image width; same rules as ``height``.
    """
    fmt = _check_format(fmt)
    if fmt == "coco_rle":
        return from_coco_rle(data, height, width)
    if fmt == "png":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInput("a PNG mask must be bytes")
        return from_png(bytes(data), height, width)
    if height is None or width is None:
        raise InvalidInput(f"decoding a {fmt} mask needs the image height and width")
    if fmt == "brush_rle":
        return from_brush_rle(data, height, width)
    return from_polygons(data, height, width)


def _check_format(fmt: str) -> str:
    if fmt not in MASK_FORMATS:
        raise InvalidInput(f"unknown mask format {fmt!r}; valid formats: {', '.join(MASK_FORMATS)}")
    return fmt


def _size_pair(size: Any) -> tuple[int, int]:
    """``(height, width)`` of a mask to decode, checked against the image pixel limit."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"mask size must be [height, width], got {size!r}") from exc
    if h <= 0 or w <= 0:
        raise InvalidInput(f"mask size must be positive, got {h}x{w}")
    check_pixel_limit(w, h, DEFAULT_MAX_PIXELS)
    return h, w


def _check_size(actual: tuple[int, int], height: int | None, width: int | None) -> None:
    if (height is not None and actual[0] != height) or (width is not None and actual[1] != width):
        raise InvalidInput(f"mask is {actual[1]}x{actual[0]} (WxH) but the image is {width}x{height}")
