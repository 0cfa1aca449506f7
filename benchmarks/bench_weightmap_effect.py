"""Does the paper's weight map help separate touching objects?  A controlled experiment.

Generates fluorescence-like images of densely packed, touching cells with known instance
labels, trains the same small 3-class U-Net (background / interior / border) twice for the
same number of steps from the same seed -- once with the paper's weight map (class
balance + w0 * exp(-(d1 + d2)^2 / 2 sigma^2)), once with plain cross-entropy -- segments
held-out images with overlap-tile inference, turns classes into instances and prints
instance F1 at IoU 0.5 and the fraction of touching true pairs that come out split.

    python benchmarks/bench_weightmap_effect.py            # ~3-4 min on 2 CPU cores
    python benchmarks/bench_weightmap_effect.py --steps 600 --seeds 0 1 2
    python benchmarks/bench_weightmap_effect.py --classes 2   # the paper's 2-class setting

Variants: "weighted" (the paper's map), "plain" (no weights) and "balanced" (the map with
w0 = 0: class balancing only, to tell the border term's share from the class balance's).
With ``--classes 2`` the training annotation separates touching cells by a 2 px background
gap (as the paper's annotations do; touching 2-class objects would otherwise merge), the
instances are the connected components of the foreground, and scores are computed against
the gap-free ground truth.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from napari_tiled_unet import segment
from napari_tiled_unet.core.metrics import match_instances, split_rate, touching_pairs
from napari_tiled_unet.core.postprocess import classes_to_instances
from napari_tiled_unet.core.train.config import TrainConfig
from napari_tiled_unet.core.train.trainer import train

#: name -> (TrainConfig options, table label)
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "weighted": ({"use_weight_map": True}, "paper weight map (w0=10,s=5)"),
    "plain": ({"use_weight_map": False}, "none (plain cross-entropy)"),
    "balanced": ({"use_weight_map": True, "w0": 0.0}, "class balance only (w0=0)"),
}


def _centres(shape: tuple[int, int], radii: np.ndarray, rng: np.random.Generator) -> list:
    """Dart throwing: centres at least 0.75 (r_i + r_j) apart, so neighbours overlap."""
    placed: list[tuple[float, float, float]] = []
    for r in radii:
        for _ in range(60):
            y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
            if all((y - py) ** 2 + (x - px) ** 2 > (0.75 * (r + q)) ** 2 for py, px, q in placed):
                placed.append((y, x, r))
                break
    return placed


def touching_cells(
    shape: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return a noisy blurred image and its instance labels of packed, touching discs.

    Pixels go to the disc with the smallest power distance ``d^2 - r^2`` (a Laguerre
    tessellation clipped to the discs), so overlapping discs meet along straight lines.
    Each cell is brightest in its centre, so touching cells show only a faint dip.
    """
    # About 60 % of the area in cells: dense clusters with some free background.
    radii = rng.uniform(7.0, 11.0, size=int(0.6 * shape[0] * shape[1] / (np.pi * 9.0**2)))
    cells = np.array(_centres(shape, radii, rng))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    pixels = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(float)
    _, near = cKDTree(cells[:, :2]).query(pixels, k=4)
    d2 = ((pixels[:, None, :] - cells[near, :2]) ** 2).sum(-1)
    power = d2 - cells[near, 2] ** 2
    best = np.argmin(power, axis=1)
    owner = near[np.arange(len(pixels)), best]
    inside = power[np.arange(len(pixels)), best] < 0
    labels = np.where(inside, owner + 1, 0).reshape(shape).astype(np.int32)
    rel = np.sqrt(d2[np.arange(len(pixels)), best]) / cells[owner, 2]
    brightness = rng.uniform(0.5, 1.0, size=len(cells))[owner]
    signal = np.where(inside, brightness * (1.0 - 0.45 * rel**2), 0.0).reshape(shape)
    image = ndi.gaussian_filter(signal, 1.5) + 0.1 + rng.normal(0, 0.06, shape)
    return (image * 1000).astype(np.float32), labels


def with_gaps(labels: np.ndarray) -> np.ndarray:
    """Set to background every object pixel that has another object in its 8-neighbourhood."""
    higher = ndi.maximum_filter(labels, size=3) > labels
    big = np.iinfo(np.int32).max
    lower = ndi.minimum_filter(np.where(labels == 0, big, labels), size=3) < labels
    return np.where((labels > 0) & (higher | lower), 0, labels)


def _evaluate(model, tests):
    tp = fp = fn = 0
    split = pairs = 0.0
    for image, truth in tests:
        probs = segment(model, image).probabilities
        pred = classes_to_instances(probs, min_size=15)
        match = match_instances(pred, truth, threshold=0.5)
        tp, fp, fn = tp + match.tp, fp + match.fp, fn + match.fn
        n_pairs = len(touching_pairs(truth))
        split += split_rate(pred, truth) * n_pairs
        pairs += n_pairs
    return {
        "f1": 2 * tp / (2 * tp + fp + fn),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "split": split / pairs,
        "pairs": int(pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--size", type=int, default=192, help="image side (px)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=["weighted", "plain", "balanced"]
    )
    parser.add_argument("--classes", type=int, choices=(2, 3), default=3)
    args = parser.parse_args()
    data_rng = np.random.default_rng(1234)
    shape = (args.size, args.size)
    training = [touching_cells(shape, data_rng) for _ in range(4)]
    tests = [touching_cells(shape, data_rng) for _ in range(4)]
    n_obj = sum(len(np.unique(t)) - 1 for _, t in tests)
    print(f"data: 4 training + 4 test images of {shape[0]}x{shape[1]} px, {n_obj} test cells")
    targets = [with_gaps(t) if args.classes == 2 else t for _, t in training]
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            config = TrainConfig(
                num_classes=args.classes,
                depth=3,
                base_filters=16,
                input_size=188,
                batch_size=4,
                steps_per_epoch=args.steps // 4,
                epochs=4,
                seed=seed,
                **VARIANTS[variant][0],
            )
            start = time.perf_counter()
            model = train(config, [i for i, _ in training], targets)
            seconds = time.perf_counter() - start
            loss = [h["loss"] for h in model.metadata.training["history"]]
            rows.append((seed, variant, seconds, loss, _evaluate(model, tests)))
    _print_table(rows, args.steps, args.classes)


def _print_table(rows, steps: int, classes: int) -> None:
    print(f"\n{classes}-class U-Net (depth 3, 16 filters, tile 188, batch 4), {steps} Adam steps")
    print(
        f"{'seed':>4} {'loss weighting':<28} {'F1@0.5':>7} {'prec.':>6} {'recall':>6} "
        f"{'touching pairs split':>21} {'train s':>8}  epoch losses"
    )
    for seed, variant, seconds, loss, m in rows:
        name = VARIANTS[variant][1]
        split = f"{m['split']:.3f} of {m['pairs']}"
        curve = " ".join(f"{v:.3f}" for v in loss)
        print(
            f"{seed:>4} {name:<28} {m['f1']:7.3f} {m['precision']:6.3f} {m['recall']:6.3f} "
            f"{split:>21} {seconds:8.0f}  {curve}"
        )


if __name__ == "__main__":
    main()
