"""Choose the bundled model's size by measurement: validation accuracy vs. CPU speed.

For each candidate model file (trained by ``tools/train_default_model.py`` with different
``--depth`` / ``--base-filters``) prints, on the validation quadrant of the DSB2018 image
(rows 0-255, columns 256-511; the held-out quadrant is not used here), foreground IoU and
instance F1 at IoU 0.5, and the inference time per megapixel on a 2048 x 2048 image
(the sample tiled 4 x 4), best of 3 after a warm-up, and the file size.

    python benchmarks/bench_model_candidates.py d3b16.keras d4b16.keras
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VALIDATION = (slice(0, 256), slice(256, 512))


def main() -> None:
    from napari_tiled_unet import load_model, segment
    from napari_tiled_unet.core.metrics import foreground_iou, match_instances
    from napari_tiled_unet.core.postprocess import classes_to_instances
    from napari_tiled_unet.data import nuclei2d

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    args = parser.parse_args()
    image, truth = nuclei2d()
    big = np.tile(image, (4, 4))
    print(
        f"{'model':<22}{'depth':>6}{'filters':>8}{'params':>10}{'MB':>6}"
        f"{'val IoU':>9}{'val F1':>8}{'s/Mpx':>8}"
    )
    for path in args.models:
        model = load_model(path)
        result = segment(model, image[VALIDATION])
        pred = classes_to_instances(result.labels, min_size=20)
        iou = foreground_iou(pred > 0, truth[VALIDATION] > 0)
        f1 = match_instances(pred, truth[VALIDATION]).f1
        segment(model, big)
        best = min(_timed(segment, model, big) for _ in range(3))
        meta = model.metadata
        print(
            f"{path.name:<22}{meta.depth:>6}{meta.base_filters:>8}"
            f"{model.keras_model.count_params():>10,}{path.stat().st_size / 1e6:>6.1f}"
            f"{iou:>9.3f}{f1:>8.3f}{best / (big.size / 1e6):>8.2f}"
        )


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
