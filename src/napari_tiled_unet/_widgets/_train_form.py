"""The Train widget's form: its fields, their order, labels and tooltips.

Layout only; :class:`~napari_tiled_unet._widgets.train.TrainWidget` adds the behaviour.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from qtpy.QtWidgets import QComboBox

from napari_tiled_unet._widgets._form_parts import (
    DockForm,
    model_file_picker,
    row,
    show_values,
    wrap_labels,
)
from napari_tiled_unet._widgets._train_plot import LossPlot
from napari_tiled_unet.batch import models as model_files
from napari_tiled_unet.batch.settings import TRAIN_DEFAULTS

__all__ = ["CLASS_CHOICES", "OPTIMIZER_CHOICES", "START_CHOICES", "TrainForm"]

START_CHOICES = (("a new model", "new"), ("a trained model (fine-tune)", "fine-tune"))
CLASS_CHOICES = (("2: background, object", 2), ("3: with a border class", 3))
OPTIMIZER_CHOICES = (("Adam", "adam"), ("SGD, momentum 0.99 (paper)", "sgd"))
# Persistent values stored as the value of a field of the same name.
_FIELDS = (
    *("start", "classes", "depth", "base_filters", "steps", "epochs"),
    *("learning_rate", "optimizer", "w0", "sigma", "model_name"),
)


class TrainForm(DockForm):
    """The fields of the Train widget, with the values that persist between sessions."""

    def __init__(self) -> None:
        super().__init__()
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.labels_layer = ComboBox(label="Labels", choices=self._labels_choices)
        self.ignore_layer = ComboBox(label="Not annotated", choices=self._ignore_choices)
        self.add_pair = PushButton(text="Add pair")
        self.remove_pair = PushButton(text="Remove")
        self.weight_map_button = PushButton(text="Weight map")
        self.pairs = Select(label="Pairs", choices=self._pair_choices)
        self.pairs_info = Label(label="")
        self.val_image = ComboBox(label="Val. image", choices=self._val_image_choices)
        self.val_labels = ComboBox(label="Val. labels", choices=self._labels_choices)
        self.val_ignore = ComboBox(label="Val. not annot.", choices=self._ignore_choices)
        self.start = ComboBox(label="Start from", choices=START_CHOICES)
        self.classes = ComboBox(label="Classes", choices=CLASS_CHOICES)
        self.depth = SpinBox(min=1, max=6)
        self.base_filters = SpinBox(min=2, max=128)
        self.shape_row = row(self.depth, self.base_filters, label="Depth, filters")
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.model_file = model_file_picker()
        self.model_info = Label(label="")
        self.steps = SpinBox(min=1, max=100_000)
        self.epochs = SpinBox(min=1, max=10_000)
        self.learning_rate = LineEdit(label="Learning rate")
        self.optimizer = ComboBox(label="Optimizer", choices=OPTIMIZER_CHOICES)
        self.w0 = FloatSpinBox(min=0.0, max=100.0, step=1.0)
        self.sigma = FloatSpinBox(min=0.5, max=100.0, step=0.5)
        self.model_name = LineEdit()
        self.overwrite = CheckBox(text="replace")
        self.target_info = Label(label="")
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="")
        self.defaults_button = PushButton(text="Restore defaults")
        self.extend(
            [
                *(self.image, self.labels_layer, self.ignore_layer),
                row(self.add_pair, self.remove_pair, self.weight_map_button),
                *(self.pairs, self.pairs_info, self.val_image, self.val_labels, self.val_ignore),
                *(self.start, self.classes, self.shape_row),
                *(self.model, self.model_file, self.model_info),
                row(self.steps, self.epochs, label="Steps x epochs"),
                *(self.learning_rate, self.optimizer),
                row(self.w0, self.sigma, label="w0, sigma"),
                *(row(self.model_name, self.overwrite, label="Name"), self.target_info),
                *(row(self.train_button, self.cancel_button), self.status),
                self.defaults_button,
            ]
        )
        self.plot = LossPlot()
        layout = self.inner_layout()
        layout.insertWidget(layout.count() - 1, self.plot)  # above "Restore defaults"
        self.pairs.native.setMaximumHeight(64)
        self.learning_rate.native.setPlaceholderText("default (Adam 1e-3, SGD 1e-2)")
        for widget, tip in self._tooltips().items():
            widget.tooltip = tip
        wrap_labels(self.pairs_info, self.model_info, self.target_info, self.status)
        for box in self._combo_boxes():
            # Long layer, file or choice names do not widen the dock: the boxes elide them.
            box.native.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            box.native.setMinimumContentsLength(12)

    def _combo_boxes(self) -> tuple[ComboBox, ...]:
        return (
            *(self.image, self.labels_layer, self.ignore_layer, self.val_image),
            *(self.val_labels, self.val_ignore, self.start, self.classes),
            *(self.model, self.optimizer),
        )

    def _val_image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [("none", None)]

    def _labels_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return []

    def _ignore_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [("none", None)]

    def _pair_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return []

    def _tooltips(self) -> dict[Any, str]:
        folder = model_files.models_folder()
        return {
            self.image: "An image to train on (2D, RGB, or a stack trained plane by plane).",
            self.labels_layer: "The objects painted on that image: a Labels layer of the image's "
            "size, 0 = background, one number per object. Planes without objects are skipped.",
            self.ignore_layer: "Optional: where the image is not annotated, left out of the "
            "loss: painted pixels of a Labels layer, or the inside of shapes. Lets you "
            "annotate part of an image; everything else unpainted is background.",
            self.add_pair: "Add the Image, Labels and Not annotated above to the training pairs.",
            self.remove_pair: "Remove the selected pairs.",
            self.pairs: "Everything that is trained on; without pairs, the Image and Labels "
            "above.",
            self.val_image: "Optional: an image that is segmented after every epoch to "
            "measure the loss and IoU; the best model by validation loss is kept.",
            self.val_labels: "The objects painted on the validation image.",
            self.val_ignore: "Optional: where the validation image is not annotated; left "
            "out of the validation loss and IoU.",
            self.start: "Train a new network, or go on training one (same shape, same "
            "normalisation).",
            self.classes: "2: background and objects (the paper); 3: a border class as "
            "well, which separates touching objects.",
            self.depth: "Depth: poolings of the U-Net (the paper: 4); each one doubles the "
            "context.",
            self.base_filters: "Base filters: of the first layer (the paper: 64; 32 trains about "
            "3x faster on a CPU).",
            self.model: f"The model to fine-tune: bundled, or found in {folder}.",
            self.model_file: "Any U-Net saved as .keras or .h5.",
            self.steps: "Steps per epoch: each trains on one random augmented tile.",
            self.epochs: "Epochs: the model is validated and saved after each one.",
            self.learning_rate: "Empty: the optimiser's default (Adam 1e-3, SGD 1e-2).",
            self.optimizer: "Adam, or the paper's SGD with momentum 0.99.",
            self.w0: "w0: extra loss weight in the narrow gaps between objects (the paper: 10).",
            self.sigma: "sigma: width of that extra weight in pixels (the paper: 5).",
            self.weight_map_button: "Show the loss weight of every pixel of the Labels above "
            "as an image layer (class balance plus the border term of w0 and sigma).",
            self.model_name: f"The model is saved as <name>.keras in {folder} and shows up in "
            "the Segment widget's model list.",
            self.overwrite: "Allow replacing an existing model file of that name.",
            self.defaults_button: "Reset every parameter to its default.",
        }

    def persistent_values(self) -> dict[str, Any]:
        """Return the values that persist between sessions (see ``TRAIN_DEFAULTS``)."""
        values = {key: getattr(self, key).value for key in TRAIN_DEFAULTS if key in _FIELDS}
        return {**values, "model": self.model.value or ""}

    def set_persistent_values(self, values: dict[str, Any]) -> None:
        """Show stored values; the model is left to the caller, unknown choices are skipped."""
        show_values(self, values, _FIELDS)
        self.update_visibility()

    def update_visibility(self) -> None:
        """Show the fields that matter for the current choices only."""
        new = self.start.value == "new"
        for widget in (self.classes, self.shape_row):
            widget.visible = new
        for other in (self.model, self.model_file, self.model_info):
            other.visible = not new
        self.val_labels.visible = self.val_image.value is not None
        self.val_ignore.visible = self.val_image.value is not None
        self.pairs.visible = bool(self.pairs.choices)
        self.pairs_info.visible = not self.pairs.choices  # the list speaks for itself
