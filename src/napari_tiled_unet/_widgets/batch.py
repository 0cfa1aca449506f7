"""The **Batch** dock widget: segment a folder of TIFF files, then open a result.

Wiring only: the form is :class:`~napari_tiled_unet._widgets._batch_form.BatchForm`, the
worker runs :func:`~napari_tiled_unet._widgets._workers.batch_steps` (the batch engine of
:mod:`napari_tiled_unet.batch.run`), the activity dock shows
:class:`~napari_tiled_unet._widgets._batch_progress.BatchProgress`, and results are read by
:func:`~napari_tiled_unet.batch.results.read_result` in a worker too.  Layers change
on the main thread only.  Importing this module imports napari and magicgui but not
TensorFlow, which loads in the worker thread on the first Run.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_tiled_unet._widgets._batch_form import NORMALIZE_CHOICES, BatchForm
from napari_tiled_unet._widgets._batch_progress import BatchProgress
from napari_tiled_unet._widgets._batch_results import BatchResults
from napari_tiled_unet._widgets._batch_text import (
    batch_inputs,
    count_inputs,
    describe_end,
    object_size_field,
    output_folder_field,
    progress_line,
    summary_line,
)
from napari_tiled_unet._widgets._dock import DockWidget, make_worker
from napari_tiled_unet._widgets._run_fields import run_options
from napari_tiled_unet._widgets._workers import (
    BatchJob,
    ModelLoaded,
    batch_steps,
    in_python_thread,
    model_key,
)
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.batch.events import (
    BatchOptions,
    FileFinished,
    FileResult,
    FileStarted,
    PlaneProgress,
)

if TYPE_CHECKING:
    import napari

__all__ = ["BatchWidget"]

# Seconds between refreshes of the results table during a run; the end refreshes it anyway.
_TABLE_INTERVAL = 1.0


class BatchWidget(DockWidget, BatchForm):
    """Segment every TIFF of a folder (or a glob pattern) into an output folder.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer that results are opened in (napari passes it in).
    """

    _defaults = _settings.BATCH_DEFAULTS
    _settings_name = "batch_settings_path"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._init_dock(napari_viewer)
        self._opening: Any = None
        self._stop = threading.Event()
        self._progress: BatchProgress | None = None
        self._start_time = 0.0
        super().__init__()
        self._table = BatchResults(self)
        fields = (self.input_folder, self.pattern, self.output_folder, self.axes)
        options = (self.tile_auto, self.tile_size, self.normalize, self.object_size)
        for widget in (*fields, *options, self.probabilities, self.probability_dtype):
            widget.changed.connect(self._on_option_changed)
        for widget in (self.overwrite, self.precision, self.memory_budget, self.tta):
            widget.changed.connect(self._on_option_changed)
        self.open_button.clicked.connect(self.open_result)
        self.results.native.itemSelectionChanged.connect(self._table.on_selection)
        self.results.native.cellDoubleClicked.connect(lambda *_: self.open_result())
        # Closing the dock (or napari) mid-run: finish the plane, delete unfinished outputs.
        self.native.destroyed.connect(lambda *_: self._stop.set())
        self._start_dock()

    def _on_option_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._save()

    # ------------------------------------------------------------------ run
    def _start(self) -> None:
        job, n_files = self._prepare()
        self._stop = threading.Event()
        self._table.files, self._table.shown = [], 0.0
        self._start_time = time.perf_counter()
        self._table.show()
        self._set_running(True)
        loaded = not isinstance(job.model, Path)
        self.status.value = "Running..." if loaded else "Loading the model..."
        # TensorFlow runs in a Python thread of its own (see _workers); the batch engine
        # stops on self._stop by itself and returns its summary, so the relay gets its own
        # event, set only when the relay ends.
        steps = partial(batch_steps, job, self._stop)
        self._active = make_worker(
            in_python_thread, steps, threading.Event(), owner=self, errored=self._on_failed
        )
        self._progress = BatchProgress(n_files, loading=not loaded)
        self._active.start()

    def _prepare(self) -> tuple[BatchJob, int]:
        inputs = batch_inputs(self.folder("input_folder"), self.pattern.value)
        outdir = output_folder_field(self.folder("output_folder"))
        path = self._model_path()
        n_files = count_inputs(inputs, outdir)
        options = BatchOptions(
            axes=self.axes.value.strip().upper() or None,
            tile_size=self.tile_request or None,
            normalize=NORMALIZE_CHOICES[self.normalize.value],
            object_size=object_size_field(self.object_size.value),
            probabilities=bool(self.probabilities.value),
            probability_dtype=self.probability_dtype.value,
            overwrite=bool(self.overwrite.value),
            **run_options(self),
        )
        model = self._loaded_for(path) or path
        return BatchJob(inputs, outdir, model, model_key(path), options), n_files

    @property
    def worker(self) -> Any:
        """The worker thread of the run in progress, or None."""
        return self._active

    def cancel(self) -> None:
        """Stop the run after the current plane; the unfinished file's outputs are deleted."""
        if self._active is not None:
            self._stop.set()
            self.cancel_button.enabled = False
            self.status.value = "Cancelling after the current plane..."

    def _on_yielded(self, item: Any) -> None:
        progress = self._progress
        if isinstance(item, ModelLoaded):
            self._keep_loaded(item)
            self._set_running_text("Running...")
        elif isinstance(item, FileStarted):
            self._set_running_text(f"file {item.number + 1}/{item.n_files}: {item.path.name}")
            if progress is not None:
                progress.file_started(item)
        elif isinstance(item, PlaneProgress):
            self._set_running_text(progress_line(item))
            if progress is not None:
                progress.plane(item)
        elif isinstance(item, FileFinished):
            self._table.files.append(item.result)
            self.summary.value = summary_line(self._table.files)
            if time.perf_counter() - self._table.shown > _TABLE_INTERVAL:  # spare the main thread
                self._table.show()
            if progress is not None:
                progress.file_finished()

    def _set_running_text(self, text: str) -> None:
        if not self._stop.is_set():  # keep "Cancelling..." in view
            self.status.value = text

    def _on_returned(self, summary: Any) -> None:
        if summary is not None:
            self._table.files = list(summary.files)
        self.status.value = describe_end(summary, time.perf_counter() - self._start_time)

    def _on_finished(self) -> None:
        self._run_ended()
        self._table.show()
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.close()

    # ------------------------------------------------------------------ results
    def selected_result(self) -> FileResult | None:
        """Return the result of the selected table row, or None."""
        return self._table.selected()

    def open_result(self) -> None:
        """Open the selected file's labels, and its image, in the viewer (read in a worker)."""
        self._table.open(self.axes.value.strip().upper())
