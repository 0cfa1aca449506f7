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

from napari.layers import Image
from napari.qt.threading import create_worker

from napari_tiled_unet._widgets._batch_form import NORMALIZE_CHOICES, TABLE_COLUMNS, BatchForm
from napari_tiled_unet._widgets._batch_progress import BatchProgress
from napari_tiled_unet._widgets._batch_text import (
    batch_inputs,
    count_inputs,
    describe_end,
    labels_output,
    progress_line,
    summary_line,
    summary_rows,
)
from napari_tiled_unet._widgets._layers import labels_name, notify_error, show_labels
from napari_tiled_unet._widgets._model_picker import ModelPickerMixin
from napari_tiled_unet._widgets._workers import (
    BatchJob,
    ModelLoaded,
    batch_steps,
    in_python_thread,
    model_key,
)
from napari_tiled_unet.batch import models as model_files
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.batch.events import (
    BatchOptions,
    FileFinished,
    FileResult,
    FileStarted,
    PlaneProgress,
)
from napari_tiled_unet.batch.results import OpenedResult, read_result

if TYPE_CHECKING:
    import napari

__all__ = ["BatchWidget"]

# Seconds between refreshes of the results table during a run; the end refreshes it anyway.
_TABLE_INTERVAL = 1.0


class BatchWidget(ModelPickerMixin, BatchForm):
    """Segment every TIFF of a folder (or a glob pattern) into an output folder.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer that results are opened in (napari passes it in).
    """

    _defaults = _settings.BATCH_DEFAULTS

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._extra_models: list[Path] = []
        self._loaded: tuple[tuple[str, int, int], Any] | None = None
        self._worker: Any = None
        self._opening: Any = None
        self._stop = threading.Event()
        self._progress: BatchProgress | None = None
        self._results: list[FileResult] = []
        self._rows: list[FileResult] = []
        self._start = self._shown = 0.0
        self._saving = False
        super().__init__()
        self._connect()
        self._start_settings()

    def _settings_path(self) -> Path:
        return _settings.batch_settings_path()

    def _connect(self) -> None:
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_file)
        fields = (self.input_folder, self.pattern, self.output_folder, self.axes)
        options = (
            self.tile_auto,
            self.tile_size,
            self.normalize,
            self.object_size,
            self.probabilities,
        )
        for widget in (*fields, *options, self.probability_dtype, self.overwrite):
            widget.changed.connect(self._on_option_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button.clicked.connect(self.open_result)
        self.defaults_button.clicked.connect(self.restore_defaults)
        self.results.native.itemSelectionChanged.connect(self._on_selection)
        self.results.native.cellDoubleClicked.connect(lambda *_: self.open_result())
        # Closing the dock (or napari) mid-run: finish the plane, delete unfinished outputs.
        self.native.destroyed.connect(lambda *_: self._stop.set())

    # ------------------------------------------------------------------ models, settings
    def _on_model_changed(self, _: Any = None) -> None:
        path = self.model.value
        if not path:
            folder = model_files.models_folder()
            self.model_info.value = f"Choose a model file, or save models in {folder}."
        else:
            self.model_info.value = model_files.describe_model(path)
        self._save()

    def _on_option_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._save()

    def _loaded_for(self, path: Path) -> Any:
        """Return the model an earlier run loaded from ``path``, if the file is unchanged."""
        key = model_key(path)
        return self._loaded[1] if self._loaded is not None and self._loaded[0] == key else None

    # ------------------------------------------------------------------ run
    @property
    def worker(self) -> Any:
        """The worker thread of the run in progress, or None."""
        return self._worker

    def run(self) -> None:
        """Check the choices and start the batch in a worker thread.

        A mistake (no input, no output folder, no model) is shown as a napari notification
        and nothing else happens.
        """
        if self._worker is not None:
            return
        try:
            job, n_files = self._prepare()
        except (ValueError, TypeError, OSError) as exc:
            self.status.value = notify_error(exc)
            return
        self._stop = threading.Event()
        self._results, self._start, self._shown = [], time.perf_counter(), 0.0
        self._show_results()
        self.run_button.enabled, self.cancel_button.enabled = False, True
        loaded = not isinstance(job.model, Path)
        self.status.value = "Running..." if loaded else "Loading the model..."
        # TensorFlow runs in a Python thread of its own (see _thread); the batch engine
        # stops on self._stop by itself and returns its summary, so the relay gets its own
        # event, set only when the relay ends.
        self._worker = create_worker(
            in_python_thread,
            partial(batch_steps, job, self._stop),
            threading.Event(),
            _start_thread=False,
            _connect={
                "yielded": self._on_yielded,
                "returned": self._on_returned,
                "errored": self._on_failed,
                "finished": self._on_finished,
            },
        )
        self._progress = BatchProgress(n_files, loading=not loaded)
        self._worker.start()

    def _prepare(self) -> tuple[BatchJob, int]:
        inputs = batch_inputs(self.folder("input_folder"), self.pattern.value)
        if not self.folder("output_folder"):
            raise ValueError("no output folder: choose one under Output folder")
        outdir = Path(self.folder("output_folder")).expanduser()
        if outdir.exists() and not outdir.is_dir():
            raise ValueError(f"{outdir} is a file; choose a folder under Output folder")
        if not self.model.value:
            raise ValueError(
                "no model chosen; choose a .keras model file under 'or file', or save "
                f"models in {model_files.models_folder()}"
            )
        path = Path(self.model.value)
        if not path.is_file():
            raise FileNotFoundError(f"the model file {path} does not exist; choose another")
        n_files = count_inputs(inputs, outdir)
        options = BatchOptions(
            axes=self.axes.value.strip().upper() or None,
            tile_size=self.tile_request or None,
            normalize=NORMALIZE_CHOICES[self.normalize.value],
            object_size=_object_size(self.object_size.value),
            probabilities=bool(self.probabilities.value),
            probability_dtype=self.probability_dtype.value,
            overwrite=bool(self.overwrite.value),
        )
        model = self._loaded_for(path) or path
        return BatchJob(inputs, outdir, model, model_key(path), options), n_files

    def cancel(self) -> None:
        """Stop the run after the current plane; the unfinished file's outputs are deleted."""
        if self._worker is not None:
            self._stop.set()
            self.cancel_button.enabled = False
            self.status.value = "Cancelling after the current plane..."

    def _on_yielded(self, item: Any) -> None:
        progress = self._progress
        if isinstance(item, ModelLoaded):
            self._loaded = (item.key, item.unet)
            if not self._stop.is_set():
                self.status.value = "Running..."
        elif isinstance(item, FileStarted):
            self._set_running(f"file {item.number + 1}/{item.n_files}: {item.path.name}")
            if progress is not None:
                progress.file_started(item)
        elif isinstance(item, PlaneProgress):
            self._set_running(progress_line(item))
            if progress is not None:
                progress.plane(item)
        elif isinstance(item, FileFinished):
            self._results.append(item.result)
            self.summary.value = summary_line(self._results)
            if time.perf_counter() - self._shown > _TABLE_INTERVAL:  # spare the main thread
                self._show_results()
            if progress is not None:
                progress.file_finished()

    def _set_running(self, text: str) -> None:
        if not self._stop.is_set():  # keep "Cancelling..." in view
            self.status.value = text

    def _on_returned(self, summary: Any) -> None:
        if summary is not None:
            self._results = list(summary.files)
        self.status.value = describe_end(summary, time.perf_counter() - self._start)

    def _on_failed(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc)

    def _on_finished(self) -> None:
        self._worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self._show_results()
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.close()

    # ------------------------------------------------------------------ results
    def _show_results(self) -> None:
        """Fill the summary and the table; select the first file that can be opened."""
        self._shown = time.perf_counter()
        self._rows = summary_rows(self._results)
        self.summary.value = summary_line(self._results) if self._results else ""
        data = [[Path(r.input).name, r.status, r.message] for r in self._rows]
        self.results.set_value((data, [], list(TABLE_COLUMNS)))
        table = self.results.native
        for row, result in enumerate(self._rows):  # full path and message on hover
            table.item(row, 0).setToolTip(result.input)
            if result.message:
                table.item(row, 2).setToolTip(result.message)
        first = next((i for i, r in enumerate(self._rows) if labels_output(r)), None)
        if first is not None:
            table.selectRow(first)
        self._on_selection()

    def selected_result(self) -> FileResult | None:
        """Return the result of the selected table row, or None."""
        row = self.results.native.currentRow()
        selected = self.results.native.selectionModel().hasSelection()
        return self._rows[row] if selected and 0 <= row < len(self._rows) else None

    def _on_selection(self) -> None:
        result = self.selected_result()
        self.open_button.enabled = result is not None and labels_output(result) is not None

    def open_result(self) -> None:
        """Open the selected file's labels, and its image, in the viewer (read in a worker)."""
        result = self.selected_result()
        if result is None:
            notify_error("choose a file in the table first (after a run)")
            return
        labels = labels_output(result)
        if labels is None:
            name = Path(result.input).name
            notify_error(f"{name} has no labels to open; choose a done or skipped file")
            return
        axes = result.axes or self.axes.value.strip().upper()
        self._opening = create_worker(
            read_result,
            labels,
            Path(result.input),
            axes,
            _connect={"returned": self._add_layers, "errored": self._on_failed},
        )

    def _add_layers(self, opened: OpenedResult) -> None:
        """Show a result read by :meth:`open_result` (the image is added once)."""
        self._opening = None
        image = next(
            (
                layer
                for layer in self._viewer.layers
                if isinstance(layer, Image)
                and layer.name == opened.name
                and layer.data.shape == opened.image.shape
            ),
            None,
        )
        if image is None:
            self._viewer.add_image(opened.image, name=opened.name, **opened.image_kwargs)
        show_labels(self._viewer, labels_name(opened.name), opened.labels, opened.labels_kwargs)
        self.status.value = f"Opened {opened.name}."


def _object_size(text: str) -> str | float | None:
    """Read the Object size field as the batch engine takes it (one-line error if unreadable)."""
    from napari_tiled_unet.core.sizing import parse_object_size

    value = parse_object_size(text.strip() or None)
    return None if value == "auto" else value
