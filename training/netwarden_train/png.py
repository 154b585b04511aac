"""A tiny PNG writer and raster helpers (matplotlib is not a dependency).

Enough for a confusion-matrix heat map and line plots: an RGB canvas, filled rectangles,
lines, and a 3x5 pixel font for digits and a few letters.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]


def write_png(path: Path, rgb: U8) -> None:
    """Write an (h, w, 3) uint8 image as an 8-bit RGB PNG."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))  # filter type 0 per row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + tag
            + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def canvas(h: int, w: int) -> U8:
    return np.full((h, w, 3), 255, np.uint8)


def line(img: U8, x0: float, y0: float, x1: float, y1: float, color: tuple[int, int, int]) -> None:
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.linspace(x0, x1, n).round().astype(int)
    ys = np.linspace(y0, y1, n).round().astype(int)
    ok = (xs >= 0) & (xs < img.shape[1]) & (ys >= 0) & (ys < img.shape[0])
    img[ys[ok], xs[ok]] = color


# 3x5 glyphs, rows top to bottom, 3 bits each
_FONT = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
    " ": "000000000000000",
}


def text(img: U8, x: int, y: int, s: str, color: tuple[int, int, int], scale: int = 2) -> None:
    """Draw digits (and . -) at (x, y); unknown characters are skipped as blanks."""
    for k, ch in enumerate(s):
        g = _FONT.get(ch, _FONT[" "])
        for i, bit in enumerate(g):
            if bit == "1":
                r, c = divmod(i, 3)
                yy, xx = y + r * scale, x + (k * 4 + c) * scale
                img[yy : yy + scale, xx : xx + scale] = color
