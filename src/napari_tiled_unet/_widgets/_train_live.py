"""One run of the Train widget: worker thread, progress bar, status lines, what was saved.

Main thread only: the worker (:func:`~napari_tiled_unet._widgets._workers.train_steps`)
computes, and its signals arrive here.  Every event is recorded, even after Cancel, because
the events still in flight tell whether a checkpoint was written.  napari's progress bars
process Qt events when they change, so each handler updates the bar last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari.utils import progress

from napari_tiled_unet._widgets._dock import make_worker
from napari_tiled_unet._widgets._train_text import describe_progress, duration
from napari_tiled_unet._widgets._workers import TrainJob, train_steps
from napari_tiled_unet.batch import models as model_files

__all__ = ["TrainCallbacks", "TrainingRun"]


@dataclass(frozen=True)
class TrainCallbacks:
    """What a run tells the widget: every event, a status line, a failure, the end."""

    event: Callable[[Any], None]
    status: Callable[[str], None]
    failed: Callable[[BaseException], None]
    ended: Callable[[], None]


class TrainingRun:
    """Train in a worker thread, with a bar in napari's activity dock.

    Parameters
    ----------
    job : TrainJob
        Checked data and settings.
    callbacks : TrainCallbacks
        How the widget hears about the run.
    worker_function : callable, optional
        The worker generator, ``(job, stop) -> events``; default
        :func:`~napari_tiled_unet._widgets._workers.train_steps`.
    """

    def __init__(
        self,
        job: TrainJob,
        callbacks: TrainCallbacks,
        worker_function: Callable[..., Any] = train_steps,
    ) -> None:
        self.job, self._callbacks = job, callbacks
        self._function = worker_function
        self._stop = threading.Event()
        self._last: Any = None
        self._saved_epoch, self._started = 0, 0.0
        self._bar: Any = None
        self.worker: Any = None

    def start(self) -> None:
        """Start the worker and a progress bar over all steps (it shows the time left)."""
        self._started = time.perf_counter()
        self.worker = make_worker(
            self._function, self.job, self._stop, owner=self, aborted=self._say_cancelled
        )
        self._callbacks.status("Preparing: TensorFlow, weight maps, the network...")
        total, name = self.job.total_steps, self.job.target.stem
        self._bar = progress(total=total, desc=f"U-Net training: {name}")
        self.worker.start()

    def cancel(self) -> None:
        """Stop after the step in progress; the model file keeps the best epoch so far."""
        self._stop.set()
        self._callbacks.status("Cancelling after the current step...")

    def _on_yielded(self, event: Any) -> None:
        steps = event.step - (self._last.step if self._last is not None else 0)
        self._last = event
        self._callbacks.event(event)
        if event.checkpoint_saved:
            self._saved_epoch = event.epoch
            model_files.notify_models_changed()
        if not self._stop.is_set():
            self._callbacks.status(describe_progress(event))
        if self._bar is not None and steps:
            self._bar.update(steps)

    def _on_returned(self, path: Path | None) -> None:
        if path is None:
            self._say_cancelled()
            return
        seconds = time.perf_counter() - self._started
        last = self._last
        result = "" if last is None or last.val_iou is None else f", val IoU {last.val_iou:.3f}"
        steps = 0 if last is None else last.step
        self._callbacks.status(
            f"Done: {steps} steps in {duration(seconds)}{result}; saved as {path.name}, "
            "now in the Segment widget's model list."
        )
        model_files.notify_models_changed()

    def _on_errored(self, exc: BaseException) -> None:
        self._callbacks.failed(exc)
        if self._saved_epoch:
            model_files.notify_models_changed()

    def _say_cancelled(self) -> None:
        steps = 0 if self._last is None else self._last.step
        if not self._saved_epoch:
            self._callbacks.status(
                f"Cancelled at step {steps}, before the first epoch ended; nothing was saved."
            )
            return
        kept = "the best model so far" if self.job.val_images else "the model"
        self._callbacks.status(
            f"Cancelled at step {steps}; {self.job.target.name} holds {kept} "
            f"(epoch {self._saved_epoch})."
        )
        model_files.notify_models_changed()

    def _on_finished(self) -> None:
        self.worker = None
        self._callbacks.ended()
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
