"""Refuse JPEG files too short to hold the picture their header announces.

libjpeg decodes a file whose scan data ends early (an end-of-image marker
right after the header, say) without an error: it fills the missing blocks
with grey. A 693-byte file announcing 7000x7000 pixels would then cost
hundreds of megabytes of pixels. Huffman-coded JPEG needs at least one bit
for every 8x8 block of every component (a DC code: baseline and
progressive alike), so a file shorter than ``blocks / 8`` bytes is refused
as truncated. Arithmetic-coded JPEG, which can go below that bound and which
browsers do not display, is refused too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backend.api.errors import InvalidImage

_SOF_HUFFMAN = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
_SOF_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
"""Markers without a length field: TEM, RST0..7, SOI."""


@dataclass(frozen=True)
class JpegFrame:
    """The start-of-frame header of a JPEG file.

    Attributes:
        marker: The SOF marker's second byte (``0xC0`` baseline, ``0xC2`` progressive, ...).
        width: Pixels per line.
        height: Lines.
        sampling: ``(horizontal, vertical)`` sampling factors of each component.
    """

    marker: int
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]

    @property
    def blocks(self) -> int:
        """8x8 blocks of all components together."""
        h_max = max(h for h, _ in self.sampling)
        v_max = max(v for _, v in self.sampling)
        total = 0
        for h, v in self.sampling:
            columns = math.ceil(math.ceil(self.width * h / h_max) / 8)
            lines = math.ceil(math.ceil(self.height * v / v_max) / 8)
            total += columns * lines
        return total


def read_frame(data: bytes) -> JpegFrame | None:
    """The SOF header of JPEG ``data``, or ``None`` if there is none before the first scan."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_HUFFMAN or marker in _SOF_ARITHMETIC:
            return _parse_frame(marker, data[pos + 4 : pos + 2 + length])
        if marker == 0xDA or length < 2:  # a scan before any frame, or a broken segment
            return None
        pos += 2 + length
    return None


def _parse_frame(marker: int, body: bytes) -> JpegFrame | None:
    if len(body) < 6:
        return None
    height, width, count = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    components = body[6 : 6 + 3 * count]
    if count == 0 or len(components) < 3 * count:
        return None
    sampling = tuple((components[3 * i + 1] >> 4, components[3 * i + 1] & 15) for i in range(count))
    if any(h == 0 or v == 0 for h, v in sampling):
        return None
    return JpegFrame(marker=marker, width=width, height=height, sampling=sampling)


def check_jpeg_complete(data: bytes) -> None:
    """Raise :class:`InvalidImage` for a JPEG too short for its size, or arithmetic-coded.

    Args:
        data: The file's bytes (a JPEG or MPO file).
    """
    frame = read_frame(data)
    if frame is None:
        return  # Pillow reports what is wrong with it
    if frame.marker in _SOF_ARITHMETIC:
        raise InvalidImage(
            "arithmetic-coded JPEG is not supported (browsers cannot show it either); "
            "save the image as a baseline or progressive JPEG, or as PNG"
        )
    least = math.ceil(frame.blocks / 8)
    if len(data) < least:
        raise InvalidImage(
            f"the JPEG file is truncated: {len(data)} bytes cannot hold the {frame.width}x{frame.height} "
            f"pixels its header announces (at least {least} bytes); send the complete file"
        )
