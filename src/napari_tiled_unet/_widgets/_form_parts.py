"""Pieces the Segment, Batch and Train forms are built from (magicgui and Qt only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label
from magicgui.widgets.bases import Widget
from qtpy.QtWidgets import QLabel, QSizePolicy

__all__ = [
    "DockForm",
    "model_file_picker",
    "row",
    "show_tile_size",
    "show_values",
    "tile_request",
    "wrap_labels",
]


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
        label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)


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


class DockForm(Container):
    """A dock's form in a scroll area; its choices stay empty until the dock widget fills them.

    The scroll area lets a dock be smaller than its form: docked alone in a small window, or
    tabbed with the other docks of the plugin, nothing is cut off, it scrolls.
    """

    def __init__(self) -> None:
        super().__init__(labels=True, scrollable=True)

    @property
    def native(self) -> Any:
        """The scroll area around the form: the widget napari docks.

        napari docks a magicgui widget's ``native``, which for a scrollable container is
        the widget inside the scroll area.
        """
        return self.root_native_widget

    def keep_labels_whole(self) -> None:
        """Give every one-line label at least its text's width, in the font it is shown in.

        magicgui measures the field names when the form is made, before napari's style
        sheet (a larger font) applies, and a narrow dock then cuts them off ("Steps x
        epo").  Called once the form is docked; the scroll area keeps the whole width.
        """
        scroll = self.root_native_widget
        for label in scroll.widget().findChildren(QLabel):
            if not label.wordWrap():
                label.setMinimumWidth(label.sizeHint().width())
        width = scroll.widget().minimumSizeHint().width()
        scroll.setMinimumWidth(width + scroll.verticalScrollBar().sizeHint().width())

    def inner_layout(self) -> Any:
        """Return the Qt layout of the form's fields (inside the scroll area)."""
        return self.root_native_widget.widget().layout()

    def _image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return []

    def _model_choices(self, _: Any = None) -> list[tuple[str, str]]:
        return []


def tile_request(form: Any) -> int:
    """Return the tile size asked for in ``form`` (0: automatic)."""
    return 0 if form.tile_auto.value else int(form.tile_size.value)


def show_tile_size(form: Any, values: dict[str, Any]) -> None:
    """Show a stored tile size (0: automatic) in ``form``'s ``tile_auto`` and ``tile_size``."""
    if "tile_size" in values:
        form.tile_auto.value = not values["tile_size"]
        if values["tile_size"]:
            form.tile_size.value = values["tile_size"]
