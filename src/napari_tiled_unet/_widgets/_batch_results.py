"""The results table of the Batch dock: fill it, select a file, open it in the viewer.

The file is read in a worker (:func:`napari_tiled_unet.batch.results.read_result`); its
layers are added on the main thread.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.qt.threading import create_worker

from napari_tiled_unet._widgets._batch_form import TABLE_COLUMNS
from napari_tiled_unet._widgets._batch_text import labels_output, summary_line, summary_rows
from napari_tiled_unet._widgets._layers import labels_name, notify_error, show_labels
from napari_tiled_unet.batch.events import FileResult
from napari_tiled_unet.batch.results import OpenedResult, read_result

__all__ = ["BatchResults", "details_text"]


def details_text(result: FileResult) -> str:
    """Return the lines shown under the table for a file: path, status, message."""
    lines = [result.input, result.status + (f": {result.message}" if result.message else "")]
    return "\n".join(lines)


class BatchResults:
    """What a run did to each file, in the form's table and summary line.

    Parameters
    ----------
    form : BatchWidget
        Provides ``results`` (the table), ``summary``, ``open_button``, ``status``,
        ``_viewer`` and ``_on_failed``.
    """

    def __init__(self, form: Any) -> None:
        self._form = form
        self.files: list[FileResult] = []
        self._rows: list[FileResult] = []
        self.shown = 0.0
        self._opening: Any = None

    def show(self) -> None:
        """Fill the summary and the table; select the first file that can be opened."""
        form = self._form
        self.shown = time.perf_counter()
        self._rows = summary_rows(self.files)
        form.summary.value = summary_line(self.files) if self.files else ""
        data = [[Path(r.input).name, r.status, r.message] for r in self._rows]
        form.results.set_value((data, [], list(TABLE_COLUMNS)))
        table = form.results.native
        for row, result in enumerate(self._rows):  # full path and message on hover
            table.item(row, 0).setToolTip(result.input)
            if result.message:
                table.item(row, 2).setToolTip(result.message)
        table.resizeRowsToContents()  # wrapped messages get the lines they need
        first = next((i for i, r in enumerate(self._rows) if labels_output(r)), None)
        if first is not None:
            table.selectRow(first)
        self.on_selection()

    def selected(self) -> FileResult | None:
        """Return the result of the selected table row, or None."""
        table = self._form.results.native
        row, selected = table.currentRow(), table.selectionModel().hasSelection()
        return self._rows[row] if selected and 0 <= row < len(self._rows) else None

    def on_selection(self, *_: Any) -> None:
        result = self.selected()
        enabled = result is not None and labels_output(result) is not None
        self._form.open_button.enabled = enabled
        self._form.details.value = "" if result is None else details_text(result)

    def open(self, axes: str) -> None:
        """Open the selected file's labels, and its image, in the viewer (read in a worker)."""
        result = self.selected()
        if result is None:
            notify_error("choose a file in the table first (after a run)")
            return
        labels = labels_output(result)
        if labels is None:
            name = Path(result.input).name
            notify_error(f"{name} has no labels to open; choose a done or skipped file")
            return
        self._opening = create_worker(
            read_result,
            labels,
            Path(result.input),
            result.axes or axes,
            _connect={"returned": self._add_layers, "errored": self._form._on_failed},
        )

    def _add_layers(self, opened: OpenedResult) -> None:
        """Show a result read by :meth:`open` (the image is added once)."""
        self._opening = None
        viewer = self._form._viewer
        image = next(
            (
                layer
                for layer in viewer.layers
                if isinstance(layer, Image)
                and layer.name == opened.name
                and layer.data.shape == opened.image.shape
            ),
            None,
        )
        if image is None:
            viewer.add_image(opened.image, name=opened.name, **opened.image_kwargs)
        show_labels(viewer, labels_name(opened.name), opened.labels, opened.labels_kwargs)
        self._form.status.value = f"Opened {opened.name}."
