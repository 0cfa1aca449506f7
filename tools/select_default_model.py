"""Compare candidate default models on the validation images, as other microscopes would see them.

The default model must work on images unlike its training images: other scales, contrast
curves, noise, blur and uneven light.  This compares model files on the real validation
images of ``tools/train_default_model.py`` (the DSB2018 top-right quadrant and the
``VALIDATION_BBBC007`` images; never the held-out ones), each at x0.5, x1 and x2 and with
every change of ``benchmarks/eval_default_model.py --robustness`` (none, Poisson noise,
gamma 0.5 and 2, a background ramp, a blur, a dimmed half), segmented with all defaults.

Printed per model: mean F1@0.5, mAP 0.5-0.9 and over-segmentation per change (over both
sets and the three scales), then the means over everything.  The model with the higher
mean F1@0.5 over everything is the more robust one; the plain "none" row is the
validation score of the unchanged images.

    python tools/select_default_model.py A.keras B.keras [...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_default_model import CHANGES, changed, rescaled, scores, validation_sets  # noqa: E402

SCALES = (0.5, 1.0, 2.0)


def evaluate(path: Path) -> dict[str, dict[str, float]]:
    """Mean F1@0.5, mAP and over-segmentation per change (over images and scales)."""
    from napari_tiled_unet import load_model, segment
    from napari_tiled_unet.core.options import DEFAULT_MIN_CONTRAST
    from napari_tiled_unet.core.postprocess import classes_to_instances, drop_faint

    model = load_model(path)
    rows: dict[str, list[dict[str, float]]] = {change: [] for change in CHANGES}
    for change in CHANGES:
        rng = np.random.default_rng(0)
        for factor in SCALES:
            for image, labels in (pair for v in validation_sets().values() for pair in v):
                image, truth = rescaled(image.astype(np.float32), labels, factor)
                image = changed(image, change, rng)
                result = segment(model, image)
                pred = classes_to_instances(result.labels, min_size=20, method="merge")
                rows[change].append(scores(drop_faint(pred, image, DEFAULT_MIN_CONTRAST), truth))
    return {
        change: {k: float(np.mean([r[k] for r in found])) for k in ("f1", "map", "over")}
        for change, found in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    args = parser.parse_args()
    results = {path.name: evaluate(path) for path in args.models}
    names = list(results)
    print(f"{'change':<24}" + "".join(f"{n[:20]:>22}{'mAP':>7}{'over':>7}" for n in names))
    for change in CHANGES:
        line = f"{change:<24}"
        for name in names:
            r = results[name][change]
            line += f"{r['f1']:>22.3f}{r['map']:>7.3f}{r['over']:>7.3f}"
        print(line)
    line = f"{'mean':<24}"
    for name in names:
        means = {k: np.mean([results[name][c][k] for c in CHANGES]) for k in ("f1", "map", "over")}
        line += f"{means['f1']:>22.3f}{means['map']:>7.3f}{means['over']:>7.3f}"
    print(line)


if __name__ == "__main__":
    main()
