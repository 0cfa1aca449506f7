"""The one-command demo: segment the bundled nuclei sample with the bundled model.

Writes the instance labels as TIFF and a PNG overlay (:mod:`napari_tiled_unet.batch.png`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_tiled_unet.batch.png import overlay, write_png

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and found."""

    labels_path: Path
    overlay_path: Path
    model_path: Path
    n_objects: int
    seconds: float


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
    from napari_tiled_unet.core.outputs import instances_of
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
    labels = instances_of(result.labels, unet.spec.num_classes, min_size=20).astype(np.uint16)
    seconds = time.perf_counter() - start
    outdir.mkdir(parents=True, exist_ok=True)
    labels_path, overlay_path = outdir / "nuclei2d_labels.tif", outdir / "nuclei2d_overlay.png"
    tifffile.imwrite(labels_path, labels, metadata={"axes": "YX"})
    write_png(overlay_path, overlay(image, labels))
    return DemoResult(labels_path, overlay_path, Path(model), int(labels.max()), seconds)
