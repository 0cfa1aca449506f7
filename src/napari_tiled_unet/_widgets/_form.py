"""The Segment widget's form: its fields, their order, labels and tooltips.

Layout only; :class:`~napari_tiled_unet._widgets.segment.SegmentWidget` adds the behaviour.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from magicgui.widgets.bases import ValueWidget

from napari_tiled_unet._widgets._form_parts import (
    DockForm,
    model_file_picker,
    show_tile_size,
    show_values,
    tile_request,
    wrap_labels,
)
from napari_tiled_unet._widgets._run_fields import run_fields
from napari_tiled_unet.batch import models as model_files
from napari_tiled_unet.batch.settings import SEGMENT_DEFAULTS

__all__ = ["NORMALIZE_CHOICES", "OUTPUT_KINDS", "STACK_CHOICES", "SegmentForm"]

NORMALIZE_CHOICES = ("as the model was trained", "percentiles", "none")
STACK_CHOICES = ("current plane", "whole stack")
#: Output choices shown to users -> the requests of
#: :func:`napari_tiled_unet.core.options.output_kind` ("auto" first: the default).
OUTPUT_KINDS = {"auto": "auto", "class labels": "classes", "instance labels": "instances"}
# Persistent values stored as the value of a field of the same name.
_FIELDS = (
    "stack",
    "normalize",
    "low",
    "high",
    "output",
    "threshold",
    "min_size",
    "min_contrast",
    "precision",
    "memory_budget",
    "tta",
    "probabilities",
    "object_size",
)


class SegmentForm(DockForm):
    """The fields of the Segment widget, with the values that persist between sessions."""

    def __init__(self) -> None:
        super().__init__()
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.model_file = model_file_picker()
        self.model_info = Label(label="")
        self.axes = LineEdit(label="Axes")
        self.stack = ComboBox(label="Stack", choices=STACK_CHOICES)
        self.normalize = ComboBox(label="Normalize", choices=NORMALIZE_CHOICES)
        self.low = FloatSpinBox(label="Low percentile", min=0.0, max=100.0, step=0.1)
        self.high = FloatSpinBox(label="High percentile", min=0.0, max=100.0, step=0.1)
        self.object_size = LineEdit(label="Object size (px)", value="auto")
        self.tile_auto = CheckBox(text="auto", value=True)
        self.tile_size = SpinBox(min=16, max=8192, step=16, value=572, enabled=False)
        self.precision, self.memory_budget, self.tta = run_fields()
        tile_row: list[ValueWidget] = [self.tile_auto, self.tile_size]
        tiles = Container(
            widgets=tile_row,
            layout="horizontal",
            labels=False,
            label="Tile size (px)",
        )
        tiles.margins = (0, 0, 0, 0)
        self.plan_info = Label(label="")
        self.output = ComboBox(label="Output", choices=tuple(OUTPUT_KINDS))
        self.threshold = FloatSlider(label="Threshold", min=0.05, max=0.95, step=0.05)
        self.min_size = SpinBox(
            label="Min. size (px)", min=0, max=1_000_000, value=SEGMENT_DEFAULTS["min_size"]
        )
        self.min_contrast = FloatSpinBox(
            label="Min. contrast",
            min=0.0,
            max=0.95,
            step=0.05,
            value=SEGMENT_DEFAULTS["min_contrast"],
        )
        self.probabilities = CheckBox(text="Add probabilities (one layer per class)")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.defaults_button = PushButton(text="Restore defaults")
        self.status = Label(label="")
        buttons = Container(
            widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False
        )
        buttons.margins = (0, 0, 0, 0)
        self.extend(
            [
                *(self.image, self.model, self.model_file, self.model_info),
                *(self.axes, self.stack, self.normalize, self.low, self.high),
                self.object_size,
                *(tiles, self.memory_budget, self.plan_info, self.precision, self.tta),
                *(self.output, self.threshold, self.min_size, self.min_contrast),
                self.probabilities,
                *(buttons, self.status, self.defaults_button),
            ]
        )
        for widget, tip in self._tooltips().items():
            widget.tooltip = tip
        wrap_labels(self.model_info, self.plan_info, self.status)

    def _tooltips(self) -> dict[Any, str]:
        folder = model_files.models_folder()
        return {
            self.image: "The image layer to segment.",
            self.model: f"Models bundled with the plugin and found in {folder} "
            f"(set ${model_files.MODELS_ENV_VAR} to use another folder).",
            self.model_file: "Any Keras U-Net saved as .keras or .h5.",
            self.axes: "One letter per dimension of the data: Y, X, C (channels), and Z or T "
            "for planes processed one by one, e.g. ZYX or YXC.",
            self.stack: "With a stack: segment only the plane shown, or every plane.",
            self.normalize: "Intensity scaling before the network; the model's own setting "
            "is right unless you know better.",
            self.object_size: "Typical object diameter in pixels, 'auto' (estimated from "
            "the image) or 'none'. The image is resampled so that its objects have the size "
            "the model was trained at, and the results back to the image's pixels.",
            self.tile_auto: "Pick the tile that covers the image with the least work within the "
            "memory budget.",
            self.tile_size: "Input size of one tile in pixels (rounded to a size the network "
            "accepts). The result does not depend on it, only speed and memory do.",
            self.output: "auto: one id per object for models with a border class (such as "
            "the bundled one), class labels otherwise; or choose class labels or instance "
            "labels (one id per object).",
            self.threshold: "Foreground-probability threshold: lower grows objects, higher "
            "shrinks them. Changes apply at once, without running the network again.",
            self.min_size: "Objects smaller than this (pixels) are dropped.",
            self.min_contrast: "Objects fainter than this fraction of the typical object of "
            "their plane (mean intensity above the local background) are dropped: out-of-"
            "focus ghosts and debris. 0 keeps every object.",
            self.probabilities: "Also show the network's class probabilities, one translucent "
            "image layer per class ('<image> P(<class>)'), under the labels.",
        }

    def normalizer(self) -> Any:
        """Return the Normalisation choice as :func:`napari_tiled_unet.segment` takes it."""
        if self.normalize.value == "none":
            return None
        if self.normalize.value == "percentiles":
            from napari_tiled_unet.core.normalize import PercentileNormalizer

            return PercentileNormalizer(self.low.value, self.high.value)
        return "auto"

    @property
    def tile_request(self) -> int:
        """The tile size asked for: 0 for automatic."""
        return tile_request(self)

    def persistent_values(self) -> dict[str, Any]:
        """Return the values that persist between sessions (see ``SEGMENT_DEFAULTS``)."""
        values = {key: getattr(self, key).value for key in SEGMENT_DEFAULTS if key in _FIELDS}
        return {**values, "model": self.model.value or "", "tile_size": self.tile_request}

    def set_persistent_values(self, values: dict[str, Any]) -> None:
        """Show stored values; the model is left to the caller, unknown choices are skipped."""
        show_values(self, values, _FIELDS)
        show_tile_size(self, values)
        self.update_visibility()

    def update_visibility(self) -> None:
        """Show (or enable) the fields that matter for the current choices only."""
        self.low.visible = self.high.visible = self.normalize.value == "percentiles"
        # Not ``min_size.visible``: magicgui reads that off the screen, False before the
        # dock is shown, which hid Min. contrast for good.
        instances = self.output.value != "class labels"
        self.min_size.visible = self.min_contrast.visible = instances
        self.tile_size.enabled = not self.tile_auto.value
