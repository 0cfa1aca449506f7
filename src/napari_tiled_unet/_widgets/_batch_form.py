"""The Batch widget's form: its fields, their order, labels and tooltips.

Layout only; :class:`~napari_tiled_unet._widgets.batch.BatchWidget` adds the behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    Table,
    TextEdit,
)
from magicgui.widgets.bases import Widget
from qtpy.QtWidgets import QAbstractItemView, QHeaderView

from napari_tiled_unet._widgets._form_parts import (
    DockForm,
    model_file_picker,
    row,
    show_tile_size,
    show_values,
    tile_request,
    wrap_labels,
)
from napari_tiled_unet._widgets._run_fields import run_fields
from napari_tiled_unet.batch import models as model_files

__all__ = ["BatchForm", "NORMALIZE_CHOICES", "TABLE_COLUMNS"]

#: Normalisation choices shown to users -> ``normalize`` of the batch engine.
NORMALIZE_CHOICES = {
    "as the model was trained": "auto",
    "percentiles 1 - 99.8": "percentile",
    "none": "none",
}
#: Columns of the results table.
TABLE_COLUMNS = ("file", "status", "message")
# Persistent values stored as the value of a field of the same name.
_FIELDS = (
    "pattern",
    "axes",
    "normalize",
    "object_size",
    "probabilities",
    "probability_dtype",
    "overwrite",
    "precision",
    "memory_budget",
    "tta",
)
_FOLDERS = ("input_folder", "output_folder")


class BatchForm(DockForm):
    """The fields of the Batch widget, with the values that persist between sessions."""

    def __init__(self) -> None:
        super().__init__()
        self.input_folder = FileEdit(label="Input folder", mode=FileDialogMode.EXISTING_DIRECTORY)
        self.pattern = LineEdit(label="Files")
        self.output_folder = FileEdit(
            label="Output folder", mode=FileDialogMode.EXISTING_DIRECTORY
        )
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.model_file = model_file_picker()
        self.model_info = Label(label="")
        self.axes = LineEdit(label="Axes")
        self.tile_auto = CheckBox(text="auto", value=True)
        self.tile_size = SpinBox(min=16, max=8192, step=16, value=572, enabled=False)
        self.precision, self.memory_budget, self.tta = run_fields()
        self.normalize = ComboBox(label="Normalize", choices=tuple(NORMALIZE_CHOICES))
        self.object_size = LineEdit(label="Object size (px)", value="auto")
        self.probabilities = CheckBox(text="write")
        self.probability_dtype = ComboBox(choices=("float32", "float16"))
        self.overwrite = CheckBox(text="Overwrite existing outputs")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="")
        self.summary = Label(label="")
        self.results = Table(value=([], [], list(TABLE_COLUMNS)))
        #: The selected file's full path, status and message, to read and copy.
        self.details = TextEdit(value="")
        self.open_button = PushButton(text="Open result", enabled=False)
        self.defaults_button = PushButton(text="Restore defaults")
        self.extend(
            [
                *(self.input_folder, self.pattern, self.output_folder),
                *(self.model, self.model_file, self.model_info, self.axes),
                row(self.tile_auto, self.tile_size, label="Tile size (px)"),
                *(self.memory_budget, self.precision, self.tta),
                self.normalize,
                self.object_size,
                row(self.probabilities, self.probability_dtype, label="Probabilities"),
                self.overwrite,
                row(self.run_button, self.cancel_button),
                self.status,
                self._results_box(),
                self.defaults_button,
            ]
        )
        self._style()

    def _results_box(self) -> Container:
        """Put the summary, the table and Open result over the full width of the dock."""
        widgets: list[Widget] = [self.summary, self.results, self.details, self.open_button]
        box = Container(widgets=widgets, labels=False)
        box.margins = (0, 0, 0, 0)
        return box

    def _style(self) -> None:
        for widget, tip in self._tooltips().items():
            widget.tooltip = tip
        wrap_labels(self.model_info, self.status, self.summary)
        self.pattern.native.setPlaceholderText("all files; or *.tif, or /data/exp1/*.tif")
        self.axes.native.setPlaceholderText("from each file")
        table = self.results.native
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # The message takes the rest of the width and wraps: an error is read in full,
        # not cut at the dock's edge.
        message = TABLE_COLUMNS.index("message")
        header.setSectionResizeMode(message, QHeaderView.ResizeMode.Stretch)
        table.setWordWrap(True)
        table.verticalHeader().hide()
        details = self.details.native
        details.setReadOnly(True)
        details.setPlaceholderText("The selected file's path, status and message.")
        details.setMaximumHeight(details.fontMetrics().lineSpacing() * 5)

    def _tooltips(self) -> dict[Any, str]:
        folder = model_files.models_folder()
        return {
            self.input_folder: "Folder of TIFF images and stacks; every file in it is "
            "segmented unless Files picks some.",
            self.pattern: "Empty: every file of the input folder. A pattern such as *.tif "
            "picks files in it; a full path such as /data/exp1/*.tif stands alone.",
            self.output_folder: "Where <name>_labels.tif (and <name>_probabilities.tif) and "
            "the run record napari-tiled-unet-run.json are written.",
            self.model: f"Models bundled with the plugin and found in {folder} "
            f"(set ${model_files.MODELS_ENV_VAR} to use another folder).",
            self.model_file: "Any Keras U-Net saved as .keras or .h5.",
            self.axes: "Empty: each file's own axes. Otherwise one letter per dimension of "
            "every input: Y, X, C (channels), Z or T (planes segmented one by one), e.g. ZYX.",
            self.tile_auto: "Pick the tile that covers the image with the least work within the "
            "memory budget.",
            self.tile_size: "Input size of one tile in pixels (rounded to a size the network "
            "accepts). The result does not depend on it, only speed and memory do.",
            self.normalize: "Intensity scaling before the network; the model's own setting "
            "is right unless you know better.",
            self.object_size: "Typical object diameter in pixels, 'auto' (estimated per "
            "file; the run record and the table say what was found) or 'none'. Images are "
            "resampled to the model's object size and the results back.",
            self.probabilities: "Also write the class probabilities: float32 as an ImageJ "
            "hyperstack with the classes as channels, float16 with the classes last.",
            self.probability_dtype: "Pixel type of the probabilities: float16 halves the files.",
            self.overwrite: "Redo files whose outputs exist; otherwise they are skipped, so "
            "an interrupted batch resumes where it stopped.",
            self.cancel_button: "Stop after the current plane; the unfinished file's outputs "
            "are deleted, finished files are kept.",
            self.results: "Every file of the last run; failed files first.",
            self.open_button: "Open the selected file's labels (and its image) in the viewer.",
            self.details: "The selected file in full; select the text to copy it.",
        }

    @property
    def tile_request(self) -> int:
        """The tile size asked for: 0 for automatic."""
        return tile_request(self)

    def persistent_values(self) -> dict[str, Any]:
        """Return the values that persist between sessions (see ``_settings.BATCH_DEFAULTS``)."""
        values = {key: getattr(self, key).value for key in _FIELDS}
        values.update({key: self.folder(key) for key in _FOLDERS})
        return {**values, "model": self.model.value or "", "tile_size": self.tile_request}

    def folder(self, key: str) -> str:
        """Text of the folder field ``key`` ("" when empty)."""
        return str(getattr(self, key).line_edit.value).strip()

    def set_persistent_values(self, values: dict[str, Any]) -> None:
        """Show stored values; the model is left to the caller, unknown choices are skipped."""
        for key in _FOLDERS:
            if key in values:
                value = values[key]
                folder = getattr(self, key).line_edit
                folder.value = str(Path(value).expanduser()) if value else ""
        show_values(self, values, _FIELDS)
        show_tile_size(self, values)
        self.update_visibility()

    def update_visibility(self) -> None:
        """Enable the fields that matter for the current choices only."""
        self.tile_size.enabled = not self.tile_auto.value
        self.probability_dtype.enabled = bool(self.probabilities.value)
