"""The one-command demo: segment the bundled nuclei sample with the bundled model.

Writes the instance labels as TIFF and a PNG overlay (image in grey, nuclei outlined and
tinted), using only numpy, scipy, tifffile and the standard library (no plotting library).
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

__all__ = ["DemoResult", "overlay", "run_demo", "write_png"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and found."""

    labels_path: Path
    overlay_path: Path
    model_path: Path
    n_objects: int
    seconds: float


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


def run_demo(outdir: Path, *, model: Path | None = None) -> DemoResult:
    """Segment the bundled sample; write ``nuclei2d_labels.tif`` and ``nuclei2d_overlay.png``.

    Parameters
    ----------
    outdir : Path
        Output folder (created if missing).
    model : Path, optional
        Model file; default: the bundled model.

    Returns
    -------
    DemoResult
    """
    import tifffile

    from napari_tiled_unet import load_model, segment
    from napari_tiled_unet.batch.models import bundled_models
    from napari_tiled_unet.core.postprocess import classes_to_instances
    from napari_tiled_unet.data import nuclei2d

    if model is None:
        bundled = bundled_models()
        if not bundled:
            raise ValueError("this installation has no bundled model; pass --model MODEL")
        model = bundled[0]
    unet = load_model(model)
    image, _ = nuclei2d()
    start = time.perf_counter()
    result = segment(unet, image)
    labels = (
        classes_to_instances(result.labels, min_size=20)
        if unet.spec.num_classes == 3
        else ndi.label(result.labels == 1)[0].astype(np.uint16)
    )
    seconds = time.perf_counter() - start
    outdir.mkdir(parents=True, exist_ok=True)
    labels_path, overlay_path = outdir / "nuclei2d_labels.tif", outdir / "nuclei2d_overlay.png"
    tifffile.imwrite(labels_path, labels, metadata={"axes": "YX"})
    write_png(overlay_path, overlay(image, labels))
    return DemoResult(labels_path, overlay_path, Path(model), int(labels.max()), seconds)
