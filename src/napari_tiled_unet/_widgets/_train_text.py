"""What the Train widget reads from its text fields and says about a run (no Qt, no layers).

The training planes come from :mod:`napari_tiled_unet.core.train.planes`, the model file
from :func:`napari_tiled_unet.batch.models.model_target`; the job runs in
:mod:`napari_tiled_unet._widgets._workers`.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["describe_progress", "duration", "parse_learning_rate"]


def parse_learning_rate(text: str) -> float | None:
    """Return the learning rate typed by the user, None for the optimiser's default.

    Raises
    ------
    ValueError
        Text that is not a positive number.
    """
    text = text.strip().lower()
    if text in ("", "auto", "default"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"the learning rate {text!r} is not a positive number; type e.g. 1e-4, or leave "
            "it empty for the optimiser's default"
        )
    return value


def duration(seconds: float) -> str:
    """Say a duration the way a person would: ``"45 s"``, ``"1 min 29 s"``, ``"1 h 05 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def describe_progress(event: Any) -> str:
    """One status line for a ``TrainProgress`` event: where the run is, losses, time left."""
    text = f"Epoch {event.epoch}/{event.epochs}, step {event.step}/{event.total_steps}: "
    text += f"loss {event.loss:.4g}"
    if event.val_loss is not None:
        text += f", val loss {event.val_loss:.4g}"
    if event.val_iou is not None:
        text += f", val IoU {event.val_iou:.3f}"
    if event.eta is not None and event.step < event.total_steps:
        text += f"; about {duration(event.eta)} left"
    return text + "."
