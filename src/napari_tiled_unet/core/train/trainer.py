"""Training with the paper's recipe: ``iter_train`` (a generator of progress) and ``train``.

One step: a batch of random augmented tiles
(:func:`~napari_tiled_unet.core.train.data.sample_batch`),
the pixel-weighted cross-entropy on the valid output region, one optimiser update in a
compiled ``tf.function``.  After every epoch the model segments the validation images with
the overlap-tile strategy (exactly as at inference); the best model by validation loss (or
IoU) is kept and, when a checkpoint path is given, written atomically to disk.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.core.model.files import ModelMetadata, UNetModel, save_model
from napari_tiled_unet.core.normalize import PercentileNormalizer, normalizer_from_dict
from napari_tiled_unet.core.train.config import TrainConfig, TrainProgress
from napari_tiled_unet.core.train.data import (
    PreparedImage,
    check_learnable,
    prepare_images,
    sample_batch,
)
from napari_tiled_unet.core.train.engine import (
    build_training_model,
    make_train_step,
    resolve_init,
    validate,
)

__all__ = ["iter_train", "train"]

Masks = Sequence[np.ndarray | None] | None
Data = tuple[Sequence[np.ndarray], Sequence[np.ndarray], Masks]


@dataclass
class _Run:
    """Mutable state of one training run."""

    config: TrainConfig
    unet: UNetModel
    step_fn: Any
    train: list[PreparedImage]
    val: list[PreparedImage]
    rng: np.random.Generator
    record: dict[str, Any]
    start: float = field(default_factory=time.perf_counter)
    steps: int = 0
    val_loss: float | None = None
    val_iou: float | None = None
    best: float | None = None
    best_weights: list[np.ndarray] | None = None
    best_at: tuple[int, int] = (0, 0)  # (epoch, steps) of the best weights
    history: list[dict[str, Any]] = field(default_factory=list)

    def event(self, epoch: int, loss: float, **flags: bool) -> TrainProgress:
        return TrainProgress(
            epoch,
            self.config.epochs,
            self.steps,
            self.config.total_steps,
            loss,
            self.val_loss,
            self.val_iou,
            self.best,
            time.perf_counter() - self.start,
            **flags,
        )


def _normalizer_for(init: UNetModel | None) -> PercentileNormalizer | None:
    """Percentiles 1 / 99.8 per image; a fine-tuned model keeps its own normalisation."""
    if init is None:
        return PercentileNormalizer()
    normalizer = normalizer_from_dict(init.metadata.normalization)
    if normalizer is not None and not isinstance(normalizer, PercentileNormalizer):
        raise ValueError("only models with percentile normalisation can be fine-tuned")
    return normalizer


def _prepare(
    config: TrainConfig, data: Data, val: Data, normalizer: PercentileNormalizer | None
) -> tuple[list[PreparedImage], list[PreparedImage]]:
    options = config.weight_options
    train = prepare_images(
        data[0], data[1], options=options, normalizer=normalizer, ignore=data[2]
    )
    check_learnable(train, config.num_classes)
    checked = (
        prepare_images(
            val[0],
            val[1],
            options=options,
            normalizer=normalizer,
            ignore=val[2],
            name="validation",
        )
        if len(val[0]) or len(val[1])
        else []
    )
    if checked and checked[0].image.shape[-1] != train[0].image.shape[-1]:
        raise ValueError("validation images must have the same channels as the training images")
    return train, checked


def _metadata(
    config: TrainConfig,
    channels: int,
    normalizer: PercentileNormalizer | None,
    labels: Sequence[np.ndarray],
) -> ModelMetadata:
    from napari_tiled_unet.core.sizing import measure_object_size

    size = measure_object_size([np.asarray(item).astype(np.int64) for item in labels])
    return ModelMetadata(
        object_size=None if size is None else round(size, 2),
        input_channels=channels,
        num_classes=config.num_classes,
        depth=config.depth,
        base_filters=config.base_filters,
        normalization=None if normalizer is None else normalizer.to_dict(),
        description=f"{config.num_classes}-class U-Net trained with napari-tiled-unet",
    )


def _file_name(source: str | None) -> str | None:
    return None if not source else Path(source).name


def _record(
    config: TrainConfig,
    train: list[PreparedImage],
    val: list[PreparedImage],
    init: UNetModel | None,
) -> dict[str, Any]:
    """Return the part of the training record fixed at the start of a run."""
    from napari_tiled_unet._version import __version__

    previous = (init.metadata.training or {}) if init is not None else {}
    return {
        "config": config.to_dict(),
        "train_shapes": [list(p.image.shape) for p in train],
        "val_shapes": [list(p.image.shape) for p in val],
        # The file's name, not its path: a model file does not carry its maker's folders.
        "init": None if init is None else (_file_name(init.source) or "in-memory model"),
        "init_steps": int(previous.get("steps", 0)),
        "package_version": __version__,
    }


def _start(config: TrainConfig, data: Data, val: Data, init: Any) -> _Run:
    from napari_tiled_unet.core._keras import get_keras

    start = time.perf_counter()
    get_keras().utils.set_random_seed(config.seed)
    start_model = resolve_init(init)
    normalizer = _normalizer_for(start_model)
    train, checked = _prepare(config, data, val, normalizer)
    channels = train[0].image.shape[-1]
    model = build_training_model(config, channels, start_model)
    unet = UNetModel(model, _metadata(config, channels, normalizer, data[1]))
    record = _record(config, train, checked, start_model)
    step_fn = make_train_step(model, config)
    rng = np.random.default_rng(config.seed)
    return _Run(config, unet, step_fn, train, checked, rng, record, start)


def _train_step(run: _Run) -> float:
    cfg = run.config
    x, y, w = sample_batch(
        run.train,
        batch_size=cfg.batch_size,
        input_size=cfg.tile_input,
        output_size=cfg.tile_output,
        rng=run.rng,
        augment=cfg.augment,
        elastic_sigma=cfg.elastic_sigma,
        elastic_grid=cfg.elastic_grid,
        scale_range=cfg.scale_range,
        appearance=cfg.appearance,
        object_size=run.unet.metadata.object_size or 20.0,
    )
    loss, finite = run.step_fn(x, y, w)
    loss = float(loss)
    run.steps += 1
    if not (bool(finite) and math.isfinite(loss)):
        what = f"loss {loss}" if not math.isfinite(loss) else "gradients not finite"
        raise ValueError(
            f"training diverged ({what}) at step {run.steps} and was stopped before any "
            f"weight became non-finite; lower the learning rate (now {cfg.lr:g})"
        )
    return loss


def _check_weights(run: _Run) -> list[np.ndarray]:
    """Return the model's weights; a ValueError if one is not finite (never saved)."""
    weights = run.unet.keras_model.get_weights()
    if not all(np.isfinite(w).all() for w in weights):
        raise ValueError(
            f"a weight of the model is not finite after step {run.steps}; nothing was saved "
            f"from this epoch: lower the learning rate (now {run.config.lr:g})"
        )
    return weights


def _improved(run: _Run) -> bool:
    value = run.val_loss if run.config.monitor == "val_loss" else run.val_iou
    assert value is not None
    better = run.best is None or (
        value < run.best if run.config.monitor == "val_loss" else value > run.best
    )
    if better:
        run.best = value
    return better


def _snapshot(run: _Run, epoch: int, steps: int) -> UNetModel:
    """Return the model with its training record: weights after ``epoch`` / ``steps``."""
    record = {
        **run.record,
        "steps": run.record["init_steps"] + steps,
        "steps_run": run.steps,
        "epochs_done": epoch,
        "monitor": run.config.monitor,
        "best": run.best,
        "history": list(run.history),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return UNetModel(run.unet.keras_model, replace(run.unet.metadata, training=record))


def _end_epoch(run: _Run, epoch: int, loss: float, checkpoint: Path | None) -> dict[str, bool]:
    """Validate if due, remember the best weights, write the checkpoint if it changed."""
    cfg = run.config
    validated = bool(run.val) and (epoch % cfg.validate_every == 0 or epoch == cfg.epochs)
    improved = False
    weights = _check_weights(run)
    if validated:
        run.val_loss, run.val_iou = validate(run.unet, run.val)
        improved = _improved(run)
        if improved:
            run.best_weights = weights
            run.best_at = (epoch, run.steps)
    run.history.append(
        {"epoch": epoch, "step": run.steps, "loss": loss}
        | ({"val_loss": run.val_loss, "val_iou": run.val_iou} if validated else {})
    )
    saved = checkpoint is not None and (improved or not run.val)
    if saved:
        assert checkpoint is not None
        save_model(_snapshot(run, epoch, run.steps), checkpoint)
    return {"epoch_end": True, "validated": validated, "checkpoint_saved": saved}


def iter_train(
    config: TrainConfig,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    val_images: Sequence[np.ndarray] | None = None,
    val_labels: Sequence[np.ndarray] | None = None,
    ignore: Masks = None,
    val_ignore: Masks = None,
    init: UNetModel | str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> Generator[TrainProgress, None, UNetModel]:
    """Train a U-Net, yielding a :class:`TrainProgress` after every step and every epoch.

    Closing the generator at a yield (cancelling) stops at once; the checkpoint file then
    holds the best model so far.  Same parameters as :func:`train`; the trained model is
    the generator's return value (``StopIteration.value``).
    """
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.suffix != ".keras":
        raise ValueError(f"checkpoints end in .keras, got {path.name!r}; rename the target")
    run = _start(
        config,
        (images, labels, ignore),
        (
            [] if val_images is None else val_images,
            [] if val_labels is None else val_labels,
            val_ignore,
        ),
        init,
    )
    for epoch in range(1, config.epochs + 1):
        losses: list[float] = []
        for _ in range(config.steps_per_epoch):
            losses.append(_train_step(run))
            yield run.event(epoch, float(np.mean(losses)))
        flags = _end_epoch(run, epoch, float(np.mean(losses)), path)
        yield run.event(epoch, float(np.mean(losses)), **flags)
    epoch, steps = config.epochs, run.steps
    if run.best_weights is not None:
        run.unet.keras_model.set_weights(run.best_weights)
        epoch, steps = run.best_at
    final = _snapshot(run, epoch, steps)
    return replace(final, source=None if path is None else str(path))


def train(
    config: TrainConfig,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    val_images: Sequence[np.ndarray] | None = None,
    val_labels: Sequence[np.ndarray] | None = None,
    ignore: Masks = None,
    val_ignore: Masks = None,
    init: UNetModel | str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> UNetModel:
    """Train a U-Net on instance-labelled images with the paper's recipe.

    Parameters
    ----------
    config : TrainConfig
        Network shape, tiles, steps, optimiser, loss weighting, augmentation, seed.
    images : sequence of ndarray
        ``(Y, X)`` or ``(Y, X, C)`` training images (any real dtype; normalised with
        percentiles 1 / 99.8 per image, or as ``init`` was).  NaN or infinite pixels get
        loss weight 0, with a warning.
    labels : sequence of ndarray of int
        Instance labels ``(Y, X)`` per image: 0 background, one integer per object.
    val_images, val_labels : sequence of ndarray, optional
        Validation data, segmented whole after every epoch; the best model by
        ``config.monitor`` is kept.  Without it, the last model is kept.
    ignore, val_ignore : sequence of (ndarray of bool or None), optional
        Per image, True where not annotated (loss weight 0, not counted in the IoU).
    init : UNetModel or path-like, optional
        Start from this model's weights (fine-tuning / resuming); its shape must match
        ``config`` (see :meth:`TrainConfig.for_model`) and its normalisation is kept.
    checkpoint : path-like, optional
        ``.keras`` file written (atomically) whenever the best model improves.

    Returns
    -------
    UNetModel
        The best model (validation) or the last one, with metadata recording the training.

    Raises
    ------
    ValueError
        Before training, with one line, for data it cannot learn from (no object, every
        pixel not annotated, a class no annotated pixel has); during training when a loss
        or gradient is not finite (the weights are left as they were, nothing is saved).
    """
    steps = iter_train(
        config,
        images,
        labels,
        val_images=val_images,
        val_labels=val_labels,
        ignore=ignore,
        val_ignore=val_ignore,
        init=init,
        checkpoint=checkpoint,
    )
    from napari_tiled_unet.core.predict import drain

    return drain(steps)
