"""The ``napari-tiled-unet train`` subcommand (batch ring: files, tqdm, no Qt).

Only the standard library is imported until the command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_tiled_unet.cli.errors import fail

__all__ = ["add_train_parser", "run_train"]

_EXAMPLE = """\
example:
  napari-tiled-unet train --images a.tif b.tif --labels a_labels.tif b_labels.tif \\
      --val-images c.tif --val-labels c_labels.tif -o my_unet.keras --epochs 20

Labels are instance label images (0 = background, one integer per object) of the images'
size; stacks (e.g. ZYX image with ZYX labels) train plane by plane.  The best model by
validation loss is kept in OUTPUT (the last one without validation data).  Fine-tune a
model with --init model.keras (its depth, filters and classes are reused)."""


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``subparsers``; it sets ``run`` to :func:`run_train`."""
    cmd = subparsers.add_parser(
        "train",
        help="train or fine-tune a U-Net on images with instance labels",
        description="Train a U-Net with the paper's recipe (weight maps, elastic "
        "deformation) and save it as a .keras model file.",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = cmd.add_argument_group("data")
    files.add_argument(
        "--images", nargs="+", type=Path, required=True, metavar="TIF", help="training images"
    )
    files.add_argument(
        "--labels", nargs="+", type=Path, required=True, metavar="TIF", help="one per image"
    )
    files.add_argument(
        "--ignore",
        nargs="+",
        type=Path,
        metavar="TIF",
        help="masks per image, nonzero where not annotated (weight 0)",
    )
    files.add_argument("--val-images", nargs="+", type=Path, default=[], metavar="TIF")
    files.add_argument("--val-labels", nargs="+", type=Path, default=[], metavar="TIF")
    files.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="MODEL.keras",
        help="model file written whenever the model improves",
    )
    files.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT if it exists; default: refuse (example: --overwrite)",
    )
    files.add_argument(
        "--init",
        type=Path,
        metavar="MODEL.keras",
        help="start from this model's weights (fine-tuning)",
    )
    net = cmd.add_argument_group("network and training (defaults: TrainConfig)")
    net.add_argument("--classes", type=int, choices=(2, 3), help="2 or 3 (with border)")
    net.add_argument("--depth", type=int, metavar="D", help="poolings (default 4)")
    net.add_argument("--base-filters", type=int, metavar="N", help="default 32")
    net.add_argument("--tile-size", type=int, metavar="N", help="training tile (input px)")
    net.add_argument("--batch-size", type=int, metavar="N")
    net.add_argument("--steps", type=int, metavar="N", help="steps per epoch (default 100)")
    net.add_argument("--epochs", type=int, metavar="N", help="default 10")
    net.add_argument("--learning-rate", type=float, metavar="LR")
    net.add_argument("--optimizer", choices=("adam", "sgd"), help="adam, or sgd (momentum 0.99)")
    net.add_argument("--no-weight-map", action="store_true", help="plain cross-entropy")
    net.add_argument("--w0", type=float, help="weight map border amplitude (default 10)")
    net.add_argument("--sigma", type=float, help="weight map border width px (default 5)")
    net.add_argument("--seed", type=int, help="random seed (default 0)")
    net.add_argument(
        "--monitor", choices=("val_loss", "val_iou"), help="best model by (default val_loss)"
    )
    cmd.set_defaults(run=run_train)
    return cmd


def _check_args(args: argparse.Namespace) -> str | None:
    """Return what is wrong with the file arguments (before anything heavy loads), or None."""
    if args.output.suffix != ".keras":
        return f"the output must end in .keras, got {args.output.name!r}"
    if args.output.is_dir():
        return f"the output {args.output} is a folder; give a model file name ending in .keras"
    if args.output.exists() and not args.overwrite:
        return f"{args.output} exists; pass --overwrite to replace it, or choose another name"
    groups = [("--labels", args.labels), ("--val-labels", args.val_labels)]
    pairs = [(args.images, args.labels), (args.val_images, args.val_labels)]
    for (flag, second), (first, _) in zip(groups, pairs):
        if len(first) != len(second):
            return f"{len(first)} images but {len(second)} {flag} files; give one per image"
    if args.ignore is not None and len(args.ignore) != len(args.images):
        return f"{len(args.images)} images but {len(args.ignore)} --ignore masks"
    paths = [*args.images, *args.labels, *args.val_images, *args.val_labels, *(args.ignore or [])]
    missing = [str(p) for p in [*paths, *([args.init] if args.init else [])] if not p.is_file()]
    return f"file not found: {', '.join(missing)}; check the path(s)" if missing else None


def _config(args: argparse.Namespace) -> tuple[Any, Any]:
    """Return the TrainConfig from the options (and the --init model, loaded, or None)."""
    from napari_tiled_unet.core.train.config import TrainConfig

    options = {
        "num_classes": args.classes,
        "depth": args.depth,
        "base_filters": args.base_filters,
        "input_size": args.tile_size,
        "batch_size": args.batch_size,
        "steps_per_epoch": args.steps,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "optimizer": args.optimizer,
        "w0": args.w0,
        "sigma": args.sigma,
        "seed": args.seed,
        "monitor": args.monitor,
    }
    given = {k: v for k, v in options.items() if v is not None}
    if args.no_weight_map:
        given["use_weight_map"] = False
    if args.init is None:
        return TrainConfig(**given), None
    from napari_tiled_unet.core.model.files import load_model

    init = load_model(args.init)
    return TrainConfig.for_model(init.metadata, **given), init


def run_train(args: argparse.Namespace) -> int:
    """Run the ``train`` subcommand; return the exit status (2 for bad input)."""
    problem = _check_args(args)
    if problem:
        return fail(problem)
    try:
        from napari_tiled_unet.batch.training import read_training_pairs

        config, init = _config(args)
        train = read_training_pairs(args.images, args.labels, args.ignore)
        val = read_training_pairs(args.val_images, args.val_labels, None)
        return _run(config, train, val, init, args.output)
    except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
        return fail(str(exc))


def _run(config: Any, train: Any, val: Any, init: Any, output: Path) -> int:
    from tqdm import tqdm

    from napari_tiled_unet.core.train.trainer import iter_train

    steps = iter_train(
        config,
        train[0],
        train[1],
        ignore=train[2],
        val_images=val[0],
        val_labels=val[1],
        init=init,
        checkpoint=output,
    )
    bar = tqdm(total=config.total_steps, unit="step", dynamic_ncols=True)
    try:
        for event in steps:
            bar.update(event.step - bar.n)
            shown = {"epoch": f"{event.epoch}/{event.epochs}", "loss": f"{event.loss:.4f}"}
            if event.val_iou is not None:
                shown["val_iou"] = f"{event.val_iou:.3f}"
            bar.set_postfix(shown, refresh=False)
            if event.epoch_end:
                bar.write(_epoch_line(event), file=sys.stderr)
    except KeyboardInterrupt:
        steps.close()
        kept = f"the best model so far is in {output}" if output.exists() else "nothing saved"
        print(f"\ninterrupted; {kept}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    print(output)
    return 0


def _epoch_line(event: Any) -> str:
    line = f"epoch {event.epoch}/{event.epochs}: loss {event.loss:.4f}"
    if event.validated:
        line += f", val_loss {event.val_loss:.4f}, val_iou {event.val_iou:.3f}"
    return line + (" (saved)" if event.checkpoint_saved else "")
