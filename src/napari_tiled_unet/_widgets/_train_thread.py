"""The Train widget's worker: training in a Python thread, progress relayed to napari.

TensorFlow runs in a plain Python thread (see :mod:`napari_tiled_unet._widgets._thread`
for why).  Cancel sets a :class:`threading.Event`; the Python thread checks it after every
event and closes the generator there (for training: the trainer stops, the checkpoint file
holds the best model of the epochs that finished).  No Qt here.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from functools import partial
from pathlib import Path
from typing import Any

from napari_tiled_unet._widgets._thread import in_python_thread
from napari_tiled_unet._widgets._train_run import TrainJob

__all__ = ["train_steps"]

_SHAPE = ("num_classes", "depth", "base_filters")


def train_steps(job: TrainJob, stop: threading.Event) -> Generator[Any, None, Path | None]:
    """Train as ``job`` says in a Python thread; yield its ``TrainProgress`` events.

    Returns
    -------
    pathlib.Path or None
        The saved model file, or None when ``stop`` was set: the file then holds the best
        model of the epochs that finished (nothing new when none did).
    """
    return (yield from in_python_thread(partial(_train, job), stop, collect=True))


def _train(job: TrainJob) -> Generator[Any, None, Path]:
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.files import load_model, save_model
    from napari_tiled_unet.core.train.config import TrainConfig
    from napari_tiled_unet.core.train.trainer import iter_train

    get_keras()  # isolated from Mesa's LLVM, see _keras._isolated_dlopen
    init = None
    if job.init is None:
        config = TrainConfig(**job.settings)
    else:
        init = load_model(job.init)
        schedule = {k: v for k, v in job.settings.items() if k not in _SHAPE}
        config = TrainConfig.for_model(init.metadata, **schedule)
    model = yield from iter_train(
        config,
        job.images,
        job.labels,
        val_images=job.val_images or None,
        val_labels=job.val_labels or None,
        ignore=job.ignore if any(m is not None for m in job.ignore) else None,
        val_ignore=job.val_ignore if any(m is not None for m in job.val_ignore) else None,
        init=init,
        checkpoint=job.target,
    )
    save_model(model, job.target)
    return job.target
