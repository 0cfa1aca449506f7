"""Train a candidate default nuclei model (3-class U-Net) from scratch, reproducibly.

Real data (see ``tools/data/README.md`` for sources and licences), split into fixed parts:

- DSB2018 / BBBC038 image shipped in ``napari_tiled_unet.data`` (512 x 512, 125 nuclei):
  training = left half, validation = top-right quadrant, held out = bottom-right quadrant.
- BBBC007 (14 images of Drosophila Kc167 nuclei, labels made by an algorithm):
  ``HELD_OUT_BBBC007`` are never read here, ``VALIDATION_BBBC007`` pick the checkpoint, the
  rest are trained on.

Generated data: :func:`napari_tiled_unet.core.train.synthetic.synthetic_nuclei` at diameters
from 8 to 120 px (textured chromatin, nucleoli, dim rims, touching and dividing nuclei,
debris, uneven background, noise).

Every image is resampled so that its nuclei have the model's object size (``--object-size``,
measured from the labels), which is what ``segment(object_size="auto")`` does at inference;
training then magnifies tiles by x0.7-1.4 and varies their appearance.  The model records
the object size of its (resampled) training labels.

Training runs in stages (``--stages``; each starts from the previous one's best checkpoint
with a lower learning rate) and every finished stage is kept in ``--work``: a run that was
stopped resumes at the first unfinished stage.

After the last stage the class-balance bias of the border class is partly undone
(:mod:`napari_tiled_unet.core.train.calibrate`, alpha chosen by mAP on the real validation
images) and the model is written.

    python tools/train_default_model.py -o nuclei2d_candidate.keras
    python tools/train_default_model.py --depth 4 -o /tmp/d4b16.keras   # a candidate

The bundled ``nuclei2d.keras`` was made in five fine-tuning runs from the project's first
bundled model (``git show 60d2b74:src/napari_tiled_unet/data/models/nuclei2d.keras``),
about 100 min on 2 CPU cores in all.  The first three ran with the appearance augmentation
of ``git show 2166cc0:src/napari_tiled_unet/core/train/appearance.py`` (no gamma curves,
blur up to 1.5 px) and made an earlier bundled model (``git show 7bd1751:...``); the
fourth, with gamma curves (x0.5-2) and blur up to 2.5 px, made the 16 px model
(``git show 1a5a6da:...``); the fifth moved the model's scale to 14 px, so that small
nuclei need no enlarging, and was chosen over the 16 px model, over a 13 px one made the
same way and over two more 14 px stages (``--init`` the 14 px model, learning rate
6.25e-5, seed 50) by ``tools/select_default_model.py``:

    python tools/train_default_model.py --init first.keras --object-size 20 --stages 3 \\
        --learning-rate 5e-4 --seed 0 --no-calibrate -o at20.keras
    python tools/train_default_model.py --init at20.keras --object-size 16 --stages 2 \\
        --learning-rate 2.5e-4 --seed 10 --no-calibrate -o at16.keras
    python tools/train_default_model.py --init at16.keras --object-size 16 --stages 2 \\
        --learning-rate 1.25e-4 --seed 20 -o previous.keras
    python tools/train_default_model.py --init previous.keras --object-size 16 --stages 2 \\
        --learning-rate 1.25e-4 --seed 30 -o at16-gamma.keras
    python tools/train_default_model.py --init at16-gamma.keras --object-size 14 --stages 2 \\
        --learning-rate 1.25e-4 --seed 40 -o nuclei2d.keras
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = Path("nuclei2d_candidate.keras")
BBBC007 = ROOT / "tools/data/BBBC007"
TRAIN = (slice(0, 512), slice(0, 256))
VALIDATION = (slice(0, 256), slice(256, 512))
HELD_OUT = (slice(256, 512), slice(256, 512))
HELD_OUT_BBBC007 = ("A9_p9d", "17P1_POS0013_D_1UL", "20P1_POS0008_D_1UL", "20P1_POS0011_D_1UL")
VALIDATION_BBBC007 = ("17P1_POS0007_D_1UL", "20P1_POS0007_D_1UL")


def bbbc007(names: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()) -> list:
    """(name, image, labels) of the BBBC007 images (``names``, or all but ``exclude``)."""
    found = sorted(p for p in BBBC007.glob("*.tif") if not p.stem.endswith("_labels"))
    out = []
    for path in found:
        if (names is not None and path.stem not in names) or path.stem in exclude:
            continue
        labels = tifffile.imread(path.with_name(path.stem + "_labels.tif"))
        out.append((path.stem, tifffile.imread(path), labels.astype(np.int32)))
    return out


def to_model_scale(
    image: np.ndarray, labels: np.ndarray, size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resample an image and its labels so that its median nucleus is ``size`` px across."""
    from napari_tiled_unet.core.sizing import measure_object_size, resize, scaled_shape

    measured = measure_object_size(labels)
    assert measured is not None
    shape = scaled_shape(labels.shape, size / measured)
    return resize(image, shape), resize(labels, shape, order=0).astype(np.int32)


def generated(count: int, size: float, rng: np.random.Generator) -> list:
    """``count`` generated images at diameters 8-120 px, each 256 x 256 at the model scale."""
    from napari_tiled_unet.core.train.synthetic import synthetic_nuclei

    out = []
    for _ in range(count):
        diameter = float(np.exp(rng.uniform(np.log(8), np.log(120))))
        side = round(256 * diameter / size)
        image, labels = synthetic_nuclei((side, side), diameter, rng=rng)
        if labels.max() > 0:
            out.append(to_model_scale(image, labels, size))
    return out


def balanced(sources: list[list], weights: tuple[float, ...] | None = None) -> list:
    """Repeat each source's images so that every source covers about the same area.

    ``weights`` (one per source, default all 1) scale the area each source should cover.

    Training tiles are drawn with probability proportional to image area; without this the
    one DSB2018 half (~0.1 Mpx at the model scale) would get ~2 % of the tiles next to the
    BBBC007 and generated images (~2 Mpx each), and the model would learn its look poorly.
    """
    areas = [sum(image.shape[0] * image.shape[1] for image, _ in source) for source in sources]
    weights = weights or (1.0,) * len(sources)
    target = max(area / weight for area, weight in zip(areas, weights, strict=True))
    out = []
    for source, area, weight in zip(sources, areas, weights, strict=True):
        out += source * max(1, round(weight * target / area))
    return out


def datasets(args: argparse.Namespace) -> tuple[list, list, list, list, str]:
    from napari_tiled_unet.data import nuclei2d

    image, truth = nuclei2d()
    rng = np.random.default_rng(args.seed)
    real_train = [(image[TRAIN], truth[TRAIN])] + [
        (im, lb) for _, im, lb in bbbc007(exclude=HELD_OUT_BBBC007 + VALIDATION_BBBC007)
    ]
    real_val = [(image[VALIDATION], truth[VALIDATION])] + [
        (im, lb) for _, im, lb in bbbc007(VALIDATION_BBBC007)
    ]
    dsb = [to_model_scale(*real_train[0], args.object_size)]
    bbbc = [to_model_scale(im, lb, args.object_size) for im, lb in real_train[1:]]
    train = balanced(
        [dsb, bbbc, generated(args.synthetic, args.object_size, rng)],
        (1.0, args.bbbc_weight, 1.0),
    )
    val = [to_model_scale(im, lb, args.object_size) for im, lb in real_val]
    val += generated(4, args.object_size, np.random.default_rng(args.seed + 1000))
    info = (
        f"data: {len(train)} training images after balancing the three sources by area from "
        f"{len(real_train)} real ones (DSB2018 left half, "
        f"{len(real_train) - 1} BBBC007), {args.synthetic} generated; validation: "
        f"{len(real_val)} real + 4 generated; all at {args.object_size:g} px nuclei; "
        f"held out (not read): DSB2018 rows 256-511 cols 256-511, BBBC007 "
        f"{', '.join(HELD_OUT_BBBC007)}"
    )
    return (
        [t[0] for t in train],
        [t[1] for t in train],
        [v[0] for v in val],
        [v[1] for v in val],
        info,
    )


def run_stage(stage: int, args: argparse.Namespace, data: tuple, init: Path | None) -> Path:
    from napari_tiled_unet.core.train.config import TrainConfig
    from napari_tiled_unet.core.train.trainer import iter_train

    target = args.work / f"stage{stage}.keras"
    config = TrainConfig(
        num_classes=3,
        depth=args.depth,
        base_filters=args.base_filters,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps,
        epochs=args.epochs,
        learning_rate=args.learning_rate * 0.5**stage,
        seed=args.seed + stage,
        monitor="val_loss",
        scale_range=(0.7, 1.4),
        appearance=True,
        w0=args.w0,
        sigma=args.sigma,
    )
    print(f"stage {stage + 1}/{args.stages}: {config.to_dict()}", flush=True)
    partial = target.with_suffix(".partial.keras")
    steps = iter_train(
        config,
        data[0],
        data[1],
        val_images=data[2],
        val_labels=data[3],
        init=init if init is not None else args.init,
        checkpoint=partial,
    )
    for event in steps:
        if event.epoch_end:
            print(
                f"  epoch {event.epoch:>3}/{event.epochs}  loss {event.loss:.4f}  "
                f"val_loss {event.val_loss:.4f}  val_iou {event.val_iou:.3f}  "
                f"{'saved' if event.checkpoint_saved else ''}  {event.elapsed:.0f} s",
                flush=True,
            )
    partial.replace(target)  # the stage is finished: a rerun starts after it
    return target


def calibrated(model, data: list) -> object:
    """Undo part of the class balancing (border spill), alpha chosen on real validation images."""
    from napari_tiled_unet.core.train.calibrate import calibrate_class_bias, class_balance_weights

    weights = class_balance_weights(data[1], num_classes=3)
    real = 1 + len(VALIDATION_BBBC007)  # the generated validation images come last
    model, found = calibrate_class_bias(model, data[2][:real], data[3][:real], weights=weights)
    tried = ", ".join(f"{a:g}: {f:.3f}" for a, f in found.scores.items())
    print(
        f"class-bias calibration: training class weights {np.round(weights, 2).tolist()}, "
        f"validation mAP by alpha {{{tried}}} -> alpha {found.alpha:g}, "
        f"logit offsets {np.round(found.offsets, 3).tolist()}",
        flush=True,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--object-size", type=float, default=16.0, help="model scale (px)")
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per stage")
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--synthetic", type=int, default=40, help="generated images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bbbc-weight",
        type=float,
        default=1.0,
        help="area of the BBBC007 training images relative to each other source",
    )
    parser.add_argument(
        "--w0", type=float, default=10.0, help="weight-map gap weight (the paper's w0)"
    )
    parser.add_argument(
        "--sigma", type=float, default=5.0, help="weight-map gap width in px (the paper's sigma)"
    )
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="keep the trained logits (e.g. for a model that will be fine-tuned further)",
    )
    parser.add_argument(
        "--init", type=Path, default=None, help="start the first stage from this model file"
    )
    parser.add_argument("--work", type=Path, default=ROOT / ".train-default")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    *data, info = datasets(args)
    print(info, f"({time.perf_counter() - start:.0f} s)", flush=True)
    previous: Path | None = None
    for stage in range(args.stages):
        done = args.work / f"stage{stage}.keras"
        if done.exists():
            print(f"stage {stage + 1}/{args.stages}: kept from an earlier run ({done})")
        else:
            done = run_stage(stage, args, tuple(data), previous)
        previous = done
    assert previous is not None
    from napari_tiled_unet import load_model, save_model

    model = load_model(previous)
    if args.calibrate:
        model = calibrated(model, data)
    save_model(model, args.output)
    print(f"training time: {time.perf_counter() - start:.0f} s")
    print(
        f"model written to {args.output} ({args.output.stat().st_size / 1e6:.1f} MB), "
        f"object size {model.metadata.object_size} px"
    )
    shutil.rmtree(args.work)  # the stages are only needed to resume a stopped run


if __name__ == "__main__":
    main()
