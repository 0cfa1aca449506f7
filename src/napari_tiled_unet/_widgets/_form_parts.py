"""Pieces the Segment, Batch and Train forms are built from (magicgui and Qt only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label
from magicgui.widgets.bases import Widget
from qtpy.QtWidgets import QSizePolicy

__all__ = ["model_file_picker", "row", "show_values", "wrap_labels"]


def row(*widgets: Widget, label: str = "") -> Container:
    """Lay ``widgets`` out side by side, as one labelled line of a form."""
    line = Container(widgets=list(widgets), layout="horizontal", labels=False, label=label)
    line.margins = (0, 0, 0, 0)
    return line


def model_file_picker() -> FileEdit:
    """Return the "or file" field: a Keras model file or a bioimage.io package (zip, yaml)."""
    return FileEdit(
        label="or file",
        mode=FileDialogMode.EXISTING_FILE,
        filter="Models (*.keras *.h5 *.hdf5 *.zip *.yaml)",
    )


def wrap_labels(*labels: Label) -> None:
    """Let long messages wrap over the full width instead of widening the dock."""
    for label in labels:
        label.native.setWordWrap(True)
        label.native.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)


def show_values(form: Any, values: dict[str, Any], fields: Iterable[str]) -> None:
    """Show stored ``values`` in the form's fields of the same name, for keys in ``fields``.

    A value that is no longer one of a combo box's choices is skipped (the field keeps its
    value), so an old settings file never breaks the form.
    """
    known = set(fields)
    for key, value in values.items():
        widget = getattr(form, key, None)
        if key not in known or widget is None:
            continue
        if isinstance(widget, ComboBox) and value not in widget.choices:
            continue
        widget.value = value
