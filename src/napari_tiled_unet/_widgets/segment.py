"""The **Segment** dock widget: choose an image and a model, press Run, watch labels grow.

Wiring only: the form is :class:`~napari_tiled_unet._widgets._form.SegmentForm`, a run is a
:class:`~napari_tiled_unet._widgets._live.LiveRun`, and every decision (axes guess, tile
plan, labels from probabilities) is a function of :mod:`napari_tiled_unet.core.outputs` or
:mod:`napari_tiled_unet.batch.models`.  Importing this module imports napari and magicgui but not
TensorFlow, which loads in the worker thread on the first Run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image

from napari_tiled_unet._widgets._export import ModelExport
from napari_tiled_unet._widgets._form import OUTPUT_KINDS, SegmentForm
from napari_tiled_unet._widgets._layers import (
    OUTPUT_IMAGE_ROLES,
    ROLE,
    notify_error,
    probabilities_name,
    show_labels,
    show_probabilities,
    spatial_metadata,
)
from napari_tiled_unet._widgets._live import LiveRun, RunCallbacks
from napari_tiled_unet._widgets._model_picker import ModelPickerMixin
from napari_tiled_unet._widgets._workers import Job, ModelLoaded, model_key
from napari_tiled_unet.batch import models as model_files
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.core import outputs
from napari_tiled_unet.core.options import SegmentOptions

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentWidget"]


class SegmentWidget(ModelPickerMixin, SegmentForm):
    """Segment the chosen image layer with a U-Net (overlap-tile), live in the viewer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are read and written (napari passes it in).
    """

    _defaults = _settings.SEGMENT_DEFAULTS

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._extra_models: list[Path] = []
        self._loaded: tuple[tuple[str, int, int], Any] | None = None
        self._cache: dict[str, Any] | None = None
        self._live: LiveRun | None = None
        self._saving = False
        self._scale_cache: tuple[Any, Any] | None = None
        self._plan_cache: tuple[Any, Any] | None = None
        super().__init__()
        self._export = ModelExport(lambda text: setattr(self.status, "value", text))
        self.export_button = self._export.add_button(
            self, lambda: self.model.value, before=self.axes
        )
        self._connect()
        self._start_settings()

    def _settings_path(self) -> Path:
        return _settings.settings_path()

    def _connect(self) -> None:
        self.image.changed.connect(self._guess_axes)
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_file)
        self.axes.changed.connect(self._update_plan)
        options = (
            self.stack,
            self.normalize,
            self.low,
            self.high,
            self.tile_auto,
            self.tile_size,
            self.object_size,
        )
        for option in options:
            option.changed.connect(self._on_option_changed)
        for output_option in (self.output, self.threshold, self.min_size):
            output_option.changed.connect(self._on_output_changed)
        self.probabilities.changed.connect(self._on_probabilities_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.defaults_button.clicked.connect(self.restore_defaults)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._on_layers_changed)

    # ------------------------------------------------------------------ choices, settings
    def _image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.metadata.get(ROLE) not in OUTPUT_IMAGE_ROLES
        ]

    def _on_layers_changed(self, _: Any = None) -> None:
        self.image.reset_choices()
        if self.image.value is None and self.axes.value:  # the last image is gone
            self._guess_axes()

    # ------------------------------------------------------------------ reactions
    def _on_model_changed(self, _: Any = None) -> None:
        path = self.model.value
        if not path:
            folder = model_files.models_folder()
            self.model_info.value = f"Choose a model file, or save models in {folder}."
        elif self._loaded_for(path) is not None:
            self.model_info.value = model_files.describe_metadata(self._loaded_for(path).metadata)
        else:
            self.model_info.value = model_files.describe_model(path)
        self._guess_axes()
        self._save()

    def _loaded_for(self, path: str) -> Any:
        """Return the model an earlier run loaded from ``path``, if the file is unchanged."""
        try:
            key = model_key(path)
        except OSError:
            return None
        return self._loaded[1] if self._loaded is not None and self._loaded[0] == key else None

    def _spec(self) -> Any:
        """Return the chosen model's geometry, from a loaded model or the file's metadata."""
        path = self.model.value
        if not path:
            return None
        loaded = self._loaded_for(path)
        if loaded is not None:
            return loaded.spec
        meta = model_files.read_model_metadata(path)
        return None if meta is None else meta.spec

    def _model_size(self) -> float | None:
        """Return the object size the chosen model was trained at (None if it records none)."""
        path = self.model.value
        loaded = self._loaded_for(path) if path else None
        meta = (
            loaded.metadata
            if loaded is not None
            else (model_files.read_model_metadata(path) if path else None)
        )
        return None if meta is None else meta.object_size

    def _rescale(self, layer: Any, layout: Any) -> Any:
        """Return the resampling a run would do (estimated once per image, plane and choice)."""
        data, axes = _image_data(layer), self.axes.value.strip().upper()
        plane = None
        if layout.plane_axes and self.stack.value == "current plane":
            point = layer.world_to_data(self._viewer.dims.point)
            plane = outputs.current_plane(axes, data.shape, point)
        key = (id(data), data.shape, axes, plane, self.object_size.value, self._model_size())
        if self._scale_cache is None or self._scale_cache[0] != key:
            rescale = outputs.rescale_for_image(
                data, layout, key[-1], self.object_size.value.strip() or None, plane=plane
            )
            self._scale_cache = (key, rescale)
        return self._scale_cache[1]

    def _guess_axes(self, _: Any = None) -> None:
        layer, spec = self.image.value, self._spec()
        self.axes.value = (
            ""
            if layer is None
            else outputs.guess_axes(
                _image_data(layer).shape,
                rgb=bool(layer.rgb),
                axis_labels=[str(a) for a in layer.axis_labels],
                input_channels=None if spec is None else spec.input_channels,
            )
        )
        self._update_plan()

    def _on_option_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._update_plan()
        self._save()

    def _update_plan(self, _: Any = None) -> None:
        """Show the tiles and memory of a run with the current choices, or what is wrong."""
        layer, spec = self.image.value, self._spec()
        self.stack.visible, self.plan_info.value = False, ""
        if layer is None:
            return
        shape = _image_data(layer).shape
        try:
            channels = None if spec is None else spec.input_channels
            layout = outputs.check_image(shape, self.axes.value, channels, rgb=bool(layer.rgb))
            self.stack.visible = bool(layout.plane_axes)
            if spec is None:
                self.plan_info.value = "Tiles: shown once the model has been loaded."
                return
            rescale = self._rescale(layer, layout)
            plan = self._plan(shape, layout, spec, rescale.factor)
        except ValueError as exc:
            self.plan_info.value = f"\u26a0 {exc}"
            return
        planes = 1 if self.stack.value == "current plane" else outputs.n_planes(shape, layout)
        text = outputs.describe_plan(plan, planes)
        scale = rescale.describe() if rescale.model_size else ""
        text = f"{scale}. {text}" if scale else text
        self.plan_info.value = text[0].upper() + text[1:]

    def _on_output_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._save()
        self._relabel()

    def _on_probabilities_changed(self, _: Any = None) -> None:
        self._save()
        if self.probabilities.value and self._cache is not None and self._live is None:
            self._show_probabilities(self._cache)

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        """Check the inputs and start segmenting in a worker thread.

        A mistake (no image, no model, wrong axes or channels) is shown as a napari
        notification and nothing else happens.
        """
        if self._live is not None:
            return
        try:
            job, info = self._prepare()
        except (ValueError, TypeError, OSError) as exc:
            self.status.value = notify_error(exc)
            return
        self.run_button.enabled, self.cancel_button.enabled = False, True
        callbacks = RunCallbacks(
            model_loaded=self._on_model_loaded,
            status=self._set_status,
            returned=self._on_returned,
            failed=self._on_failed,
            ended=self._on_ended,
        )
        self._live = LiveRun(
            self._viewer, job, info, threshold=self.threshold.value, callbacks=callbacks
        )
        self._live.start()

    def _prepare(self) -> tuple[Job, dict[str, Any]]:
        layer = self.image.value
        if layer is None:
            raise ValueError(
                "there is no image to segment; open one (e.g. File > Open Sample > "
                "napari-tiled-unet) and choose it under Image"
            )
        if not self.model.value:
            raise ValueError(
                "no model chosen; choose a .keras model file under 'or file', or save "
                f"models in {model_files.models_folder()}"
            )
        path = Path(self.model.value)
        if not path.is_file():
            raise FileNotFoundError(f"the model file {path} does not exist; choose another")
        data, axes, spec = _image_data(layer), self.axes.value.strip().upper(), self._spec()
        channels = None if spec is None else spec.input_channels
        layout = outputs.check_image(data.shape, axes, channels, rgb=bool(layer.rgb))
        rescale = self._rescale(layer, layout)
        # The size and the tiles shown before Run are what runs (not worked out again).
        options = SegmentOptions(
            axes=axes,
            tile_size=self.tile_request or None,
            normalize=self._normalizer(),
            object_size=rescale.object_size if rescale.active else "none",
        )
        plan = None if spec is None else self._plan(data.shape, layout, spec, rescale.factor)
        if plan is not None:
            options = options.replace(batch_size=plan.batch_size)
        planes = None
        if layout.plane_axes and self.stack.value == "current plane":
            point = layer.world_to_data(self._viewer.dims.point)
            planes = [outputs.current_plane(axes, data.shape, point)]
        model = self._loaded_for(str(path)) or path
        info = {"layer": layer, "layout": layout, "spatial": spatial_metadata(layer, axes)}
        return Job(model, model_key(path), data, options, planes, plan), info

    def _plan(self, shape: Any, layout: Any, spec: Any, factor: float) -> Any:
        """Return the tile plan of a run with these choices (planned once, shown, run)."""
        key = (tuple(shape), layout.axes, spec, self.tile_request, factor)
        if self._plan_cache is None or self._plan_cache[0] != key:
            plan = outputs.live_plan(
                shape, layout, spec, tile_size=self.tile_request, factor=factor
            )
            self._plan_cache = (key, plan)
        return self._plan_cache[1]

    def _normalizer(self) -> Any:
        if self.normalize.value == "none":
            return None
        if self.normalize.value == "percentiles":
            from napari_tiled_unet.core.normalize import PercentileNormalizer

            return PercentileNormalizer(self.low.value, self.high.value)
        return "auto"

    @property
    def worker(self) -> Any:
        """The worker thread of the run in progress, or None."""
        return None if self._live is None else self._live.worker

    def cancel(self) -> None:
        """Stop the run after the batch of tiles in progress and undo its changes."""
        if self._live is not None:
            self.cancel_button.enabled = False
            self._live.cancel()

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _on_model_loaded(self, message: ModelLoaded) -> None:
        self._loaded = (message.key, message.unet)
        self._update_plan()

    def _on_returned(self, cache: dict[str, Any]) -> None:
        self._cache = cache
        self._relabel(force=True)
        if self.probabilities.value:
            self._show_probabilities(cache)

    def _on_failed(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc)

    def _on_ended(self) -> None:
        self._live = None
        self.run_button.enabled, self.cancel_button.enabled = True, False

    # ------------------------------------------------------------------ outputs
    def _relabel(self, force: bool = False) -> None:
        """Recompute the labels from the cached probabilities (no network run)."""
        cache = self._cache
        if cache is None or cache["layer"] not in self._viewer.layers:
            return
        if self._live is not None and not force:
            return
        labels = outputs.labels_from_probabilities(
            cache["probabilities"],
            axes=cache["axes"],
            kind=OUTPUT_KINDS[self.output.value],  # type: ignore[arg-type]
            threshold=self.threshold.value,
            min_size=self.min_size.value,
        )
        # The same layer, with its data type kept (or a new one in its place, see show_labels).
        layer = show_labels(self._viewer, cache["layer"].name, labels, cache["spatial"]).layer
        cache["layer"] = layer

    def _show_probabilities(self, cache: dict[str, Any]) -> None:
        name = probabilities_name(cache["image"].name)
        show_probabilities(
            self._viewer,
            name,
            cache["probabilities"],
            cache["spatial"],
            cache["class_names"],
            below=cache["layer"],
        )


def _image_data(layer: Any) -> Any:
    """Full-resolution data of an image layer (level 0 of a multiscale pyramid)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data
