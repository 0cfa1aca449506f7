"""Pictures of results: an overlay of labels on an image, written as PNG.

Only numpy, scipy and the standard library (no plotting library); the demo and the
BioImage Model Zoo cover use them.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

__all__ = ["overlay", "write_png"]


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an ``(Y, X, 3)`` uint8 array as a PNG file (8-bit RGB, no filtering)."""
    height, width, _ = rgb.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(png)


def overlay(image: np.ndarray, labels: np.ndarray, *, alpha: float = 0.35) -> np.ndarray:
    """Return an RGB uint8 picture: the image in grey, objects tinted and outlined."""
    lo, hi = np.percentile(image, (1, 99.8))
    grey = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None] * 255, 3, axis=-1)
    palette = np.random.default_rng(0).uniform(60, 255, size=(int(labels.max()) + 1, 3))
    inside = labels > 0
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * palette[labels[inside]]
    edge = inside & (ndi.grey_erosion(labels, size=3) != ndi.grey_dilation(labels, size=3))
    rgb[edge] = (255, 220, 0)
    return rgb.astype(np.uint8)
