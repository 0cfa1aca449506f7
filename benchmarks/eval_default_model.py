"""Accuracy of the bundled nuclei model on real held-out data, against a classical baseline.

Held-out data: the bottom-right quadrant (rows 256-511, columns 256-511) of the DSB2018 /
BBBC038 nuclei image in ``napari_tiled_unet.data``; ``tools/train_default_model.py`` never
reads it (it trains on the left half and validates on the top-right quadrant).  The quadrant
is segmented on its own (mirrored borders), so no pixel of it was seen in training.

Prints foreground IoU, instance precision / recall / F1 at IoU 0.5 and mean AP over IoU
0.5-0.9 for the U-Net and, computed in the same run, for Otsu thresholding + distance
transform watershed.  Usage: ``python benchmarks/eval_default_model.py [--model M.keras]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HELD_OUT = (slice(256, 512), slice(256, 512))


def otsu_watershed(image: np.ndarray, *, min_distance: int = 5) -> np.ndarray:
    """Classical baseline: smooth, Otsu threshold, split touching nuclei by watershed."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    smooth = ndi.gaussian_filter(image.astype(np.float32), 1.0)
    mask = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=ndi.label(mask)[0])
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from napari_tiled_unet.metrics import foreground_iou, match_instances, mean_average_precision

    match = match_instances(pred, truth, threshold=0.5)
    return {
        "iou": foreground_iou(pred > 0, truth > 0),
        "precision": match.precision,
        "recall": match.recall,
        "f1": match.f1,
        "map": mean_average_precision(pred, truth),
        "count": int(len(np.unique(pred)) - 1),
    }


def main() -> None:
    from napari_tiled_unet import load_model, segment
    from napari_tiled_unet.data import nuclei2d
    from napari_tiled_unet.models import bundled_models
    from napari_tiled_unet.postprocess import classes_to_instances

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    args = parser.parse_args()
    path = args.model or bundled_models()[0]
    image, labels = nuclei2d()
    region, truth = image[HELD_OUT], labels[HELD_OUT]
    model = load_model(path)
    segment(model, region)  # warm-up: graph tracing is not part of the timing
    start = time.perf_counter()
    result = segment(model, region)
    seconds = time.perf_counter() - start
    unet = classes_to_instances(result.labels, min_size=20)
    rows = {
        f"U-Net ({path.name})": scores(unet, truth),
        "Otsu + watershed": scores(otsu_watershed(region), truth),
    }
    meta = model.metadata
    print(
        f"held-out data: DSB2018 image rows 256-511, cols 256-511 "
        f"({len(np.unique(truth)) - 1} nuclei, partly cut by the region's edge)"
    )
    print(
        f"model: depth {meta.depth}, {meta.base_filters} base filters, "
        f"{model.keras_model.count_params():,} parameters, "
        f"{seconds / (region.size / 1e6):.2f} s per megapixel on this CPU"
    )
    print(
        f"{'method':<32}{'fg IoU':>8}{'prec.':>8}{'recall':>8}{'F1@0.5':>8}"
        f"{'mAP .5-.9':>11}{'objects':>9}"
    )
    for name, s in rows.items():
        print(
            f"{name:<32}{s['iou']:>8.3f}{s['precision']:>8.3f}{s['recall']:>8.3f}"
            f"{s['f1']:>8.3f}{s['map']:>11.3f}{s['count']:>9}"
        )


if __name__ == "__main__":
    main()
