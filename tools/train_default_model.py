"""Train the bundled default nuclei model (3-class U-Net) from scratch, reproducibly.

Real data: the DSB2018 / BBBC038 nuclei image shipped in ``napari_tiled_unet.data``
(512 x 512, 125 annotated nuclei), split into fixed regions:

- training:   the left half            (rows 0-511,   columns 0-255)
- validation: the top-right quadrant   (rows 0-255,   columns 256-511), picks the checkpoint
- held out:   the bottom-right quadrant (rows 256-511, columns 256-511), never seen here;
  ``benchmarks/eval_default_model.py`` reports on it only.

Generated data: fluorescence-like images of nuclei (ellipses of varied size, brightness,
texture, blur and noise, some touching) with exact instance labels, to widen what the model
has seen beyond one image.

    python tools/train_default_model.py                       # writes the bundled model
    python tools/train_default_model.py --depth 4 -o /tmp/d4b16.keras   # a candidate

The defaults (depth 3, 16 base filters, 20 epochs of 100 steps of 2 tiles, seed 0) are
those of the bundled model, chosen over depth 4 / 16 filters by
``benchmarks/bench_model_candidates.py`` (validation accuracy vs. seconds per megapixel).

Prints the data, the configuration, per-epoch losses, the time taken and the validation
metrics of the chosen checkpoint.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

TRAIN = (slice(0, 512), slice(0, 256))
VALIDATION = (slice(0, 256), slice(256, 512))
HELD_OUT = (slice(256, 512), slice(256, 512))
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "src/napari_tiled_unet/data/models/nuclei2d.keras"
)


def synthetic_nuclei(
    shape: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return a fluorescence-like image of nuclei and its instance labels."""
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    signal = np.zeros(shape, np.float32)
    scale = rng.uniform(0.6, 1.6)  # nucleus size varies between data sets
    count = int(rng.uniform(0.15, 0.35) * shape[0] * shape[1] / (np.pi * (11 * scale) ** 2))
    for index in range(1, count + 1):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        a, b = rng.uniform(7, 14, size=2) * scale
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dy * np.cos(angle) + dx * np.sin(angle)) / a
        v = (-dy * np.sin(angle) + dx * np.cos(angle)) / b
        inside = (u**2 + v**2 <= 1.0) & (labels == 0)
        labels[inside] = index
        signal[inside] = rng.uniform(0.3, 1.0) * (1.0 - 0.3 * (u[inside] ** 2 + v[inside] ** 2))
    texture = ndi.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    image = signal * (1 + 0.15 * texture / (texture.std() + 1e-6))
    image = ndi.gaussian_filter(image, rng.uniform(0.8, 2.0)) + rng.uniform(0.02, 0.15)
    image = rng.poisson(np.clip(image, 0, None) * rng.uniform(80, 400)).astype(np.float32)
    labels, _, _ = _relabel(labels)
    return image, labels


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Drop fragments of ellipses cut by later ones' priority (keep the largest piece)."""
    out = np.zeros_like(labels)
    count = 0
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        pieces, n = ndi.label(labels[box] == index)
        if n == 0:
            continue
        sizes = ndi.sum_labels(np.ones_like(pieces), pieces, range(1, n + 1))
        if sizes.max() < 20:
            continue
        count += 1
        region = out[box]
        region[pieces == 1 + int(np.argmax(sizes))] = count
    return out, count, len(ndi.find_objects(labels))


def main() -> None:
    from napari_tiled_unet import save_model, segment
    from napari_tiled_unet.data import nuclei2d
    from napari_tiled_unet.metrics import foreground_iou, match_instances
    from napari_tiled_unet.postprocess import classes_to_instances
    from napari_tiled_unet.train.config import TrainConfig
    from napari_tiled_unet.train.trainer import iter_train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--synthetic", type=int, default=8, help="generated 256x256 images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    image, truth = nuclei2d()
    rng = np.random.default_rng(args.seed)
    generated = [synthetic_nuclei((256, 256), rng) for _ in range(args.synthetic)]
    images = [image[TRAIN]] + [g[0] for g in generated]
    labels = [truth[TRAIN]] + [g[1] for g in generated]
    print(
        f"data: DSB2018 nuclei image {image.shape}, training region rows 0-511 cols 0-255 "
        f"({len(np.unique(truth[TRAIN])) - 1} nuclei), validation rows 0-255 cols 256-511, "
        f"held out rows 256-511 cols 256-511 (not used here); {args.synthetic} generated "
        f"256x256 images ({sum(int(g[1].max()) for g in generated)} nuclei)"
    )
    config = TrainConfig(
        num_classes=3,
        depth=args.depth,
        base_filters=args.base_filters,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps,
        epochs=args.epochs,
        seed=args.seed,
        monitor="val_iou",
    )
    print(f"config: {config.to_dict()}")
    start = time.perf_counter()
    steps = iter_train(
        config,
        images,
        labels,
        val_images=[image[VALIDATION]],
        val_labels=[truth[VALIDATION]],
        checkpoint=args.output,
    )
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            model = stop.value
            break
        if event.epoch_end:
            print(
                f"epoch {event.epoch:>3}/{event.epochs}  loss {event.loss:.4f}  "
                f"val_loss {event.val_loss:.4f}  val_iou {event.val_iou:.3f}  "
                f"{'saved' if event.checkpoint_saved else ''}  {event.elapsed:.0f} s",
                flush=True,
            )
    print(f"training time: {time.perf_counter() - start:.0f} s")
    save_model(model, args.output)
    result = segment(model, image[VALIDATION])
    instances = classes_to_instances(result.labels, min_size=20)
    match = match_instances(instances, truth[VALIDATION])
    print(
        f"validation (rows 0-255, cols 256-511): foreground IoU "
        f"{foreground_iou(instances > 0, truth[VALIDATION] > 0):.3f}, F1@0.5 {match.f1:.3f}"
    )
    print(f"model written to {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
