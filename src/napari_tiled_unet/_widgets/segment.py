"""The **Segment** dock widget: choose an image and a model, press Run, watch labels grow.

Wiring only: the form is :class:`~napari_tiled_unet._widgets._form.SegmentForm`, the shared
model / settings / run wiring is :class:`~napari_tiled_unet._widgets._dock.DockWidget`, a run
is a :class:`~napari_tiled_unet._widgets._live.LiveRun`, what it would do is worked out by
:class:`~napari_tiled_unet._widgets._segment_plan.RunPreview`, and every decision (axes
guess, tile plan, labels from probabilities) is a function of
:mod:`napari_tiled_unet.core.outputs`.  Importing this module imports napari and magicgui
but not TensorFlow, which loads in the worker thread on the first Run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_tiled_unet._widgets._dock import DockWidget, layer_data, viewer_window
from napari_tiled_unet._widgets._export import ModelExport
from napari_tiled_unet._widgets._form import OUTPUT_KINDS, SegmentForm
from napari_tiled_unet._widgets._layers import spatial_metadata
from napari_tiled_unet._widgets._live import LiveRun, RunCallbacks
from napari_tiled_unet._widgets._relabel import Relabeller, Request
from napari_tiled_unet._widgets._run_fields import run_options
from napari_tiled_unet._widgets._segment_plan import RunPreview, show_cached_probabilities
from napari_tiled_unet._widgets._workers import Job, ModelLoaded, model_key
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.core import outputs
from napari_tiled_unet.core.options import SegmentOptions, output_kind

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentWidget"]

_NO_IMAGE = (
    "there is no image to segment; open one (e.g. File > Open Sample > napari-tiled-unet) "
    "and choose it under Image"
)


class SegmentWidget(DockWidget, SegmentForm):
    """Segment the chosen image layer with a U-Net (overlap-tile), live in the viewer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are read and written (napari passes it in).
    """

    _defaults = _settings.SEGMENT_DEFAULTS
    _settings_name = "settings_path"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._init_dock(napari_viewer)
        self._cache: dict[str, Any] | None = None
        self._preview = RunPreview()
        self._relabeller = Relabeller(napari_viewer, self._on_failed)
        super().__init__()
        self._export = ModelExport(self._set_status)
        self.export_button = self._export.add_button(
            self, lambda: self.model.value, before=self.axes
        )
        self.image.changed.connect(self._guess_axes)
        self.axes.changed.connect(self._update_plan)
        options = (self.stack, self.normalize, self.low, self.high, self.tile_auto)
        run_fields = (self.memory_budget, self.precision, self.tta)
        for option in (*options, self.tile_size, self.object_size, *run_fields):
            option.changed.connect(self._on_option_changed)
        for output_option in (self.output, self.threshold, self.min_size, self.min_contrast):
            output_option.changed.connect(self._on_output_changed)
        self.probabilities.changed.connect(self._on_probabilities_changed)
        self._follow_layers(self._on_layers_changed)
        self._start_dock()

    def _on_layers_changed(self, _: Any = None) -> None:
        self.image.reset_choices()
        if self.image.value is None and self.axes.value:  # the last image is gone
            self._guess_axes()

    # ------------------------------------------------------------------ reactions
    def _after_model_changed(self) -> None:
        self._guess_axes()

    def _what_runs(self, layer: Any) -> Any:
        """Work out what a run of ``layer`` with the current choices would do."""
        meta, point = self._chosen_metadata(), self._viewer.dims.point
        return self._preview.of(self, layer, meta, point)

    def _guess_axes(self, _: Any = None) -> None:
        layer, meta = self.image.value, self._chosen_metadata()
        self.axes.value = (
            ""
            if layer is None
            else outputs.guess_axes(
                layer_data(layer).shape,
                rgb=bool(layer.rgb),
                axis_labels=[str(a) for a in layer.axis_labels],
                input_channels=None if meta is None else meta.input_channels,
            )
        )
        self._update_plan()

    def _on_option_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._update_plan()
        self._save()

    def _update_plan(self, _: Any = None) -> None:
        """Show the tiles and memory of a run with the current choices, or what is wrong."""
        layer = self.image.value
        self.stack.visible, self.plan_info.value = False, ""
        if layer is None:
            return
        try:
            layout = self._preview.layout(self, layer, self._chosen_metadata())
            self.stack.visible = bool(layout.plane_axes)
            preview = self._what_runs(layer)
        except ValueError as exc:
            self.plan_info.value = f"\u26a0 {exc}"
            return
        one = self.stack.value == "current plane"
        planes = 1 if one else outputs.n_planes(layer_data(layer).shape, layout)
        self.plan_info.value = preview.describe(planes)

    def _on_output_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._save()
        self._relabel()

    def _relabel(self, force: bool = False) -> None:
        """Recompute the labels from the cached probabilities, in a worker (no network run).

        Returns at once; the labels layer changes when the worker is done (see
        :class:`~napari_tiled_unet._widgets._relabel.Relabeller`).
        """
        if self._cache is not None and (force or self._active is None):
            n_classes = self._cache["probabilities"].shape[-1]
            kind = output_kind(n_classes, OUTPUT_KINDS[self.output.value])
            request = Request(
                self._cache,
                kind,
                self.threshold.value,
                self.min_size.value,
                self.min_contrast.value,
            )
            self._relabeller.request(request)

    @property
    def worker(self) -> Any:
        """The worker of the run in progress, else of the labels being recomputed, or None."""
        if self._active is not None:
            return self._active.worker
        return self._relabeller.worker

    def _on_probabilities_changed(self, _: Any = None) -> None:
        self._save()
        if self.probabilities.value and self._cache is not None and self._active is None:
            show_cached_probabilities(self._viewer, self._cache)

    # ------------------------------------------------------------------ run
    def _start(self) -> None:
        job, info = self._prepare()
        self._relabeller.discard()  # labels still being recomputed would overwrite the run's
        self._set_running(True)
        callbacks = RunCallbacks(
            model_loaded=self._on_model_loaded,
            status=self._set_status,
            returned=self._on_returned,
            failed=self._on_failed,
            ended=self._on_ended,
        )
        self._active = LiveRun(self._viewer, job, info, callbacks=callbacks)
        self._active.start()

    def _prepare(self) -> tuple[Job, dict[str, Any]]:
        layer = self.image.value
        if layer is None:
            raise ValueError(_NO_IMAGE)
        path = self._model_path()
        preview, axes = self._what_runs(layer), self.axes.value.strip().upper()
        # The size and the tiles shown before Run are what runs (not worked out again).
        rescale, plan = preview.rescale, preview.plan
        options = SegmentOptions(
            axes=axes,
            tile_size=self.tile_request or None,
            batch_size=None if plan is None else plan.batch_size,
            normalize=self.normalizer(),
            object_size=rescale.object_size if rescale.active else "none",
            **run_options(self),
        )
        planes = [preview.plane] if preview.plane is not None else None
        if planes is None and preview.layout.plane_axes:  # the plane on view comes first
            position = layer.world_to_data(self._viewer.dims.point)
            planes = outputs.planes_from(axes, layer_data(layer).shape, position)
        model = self._loaded_for(path) or path
        spatial = spatial_metadata(layer, axes)
        info = {
            "layer": layer,
            "layout": preview.layout,
            "spatial": spatial,
            "window": viewer_window(self.native),
        }
        data = layer_data(layer)
        job = Job(model, model_key(path), data, options, planes, plan, self.threshold.value)
        return job, info

    def _on_model_loaded(self, message: ModelLoaded) -> None:
        self._keep_loaded(message)
        self._update_plan()

    def _on_returned(self, cache: dict[str, Any]) -> None:
        self._cache = cache
        self._relabel(force=True)
        if self.probabilities.value:
            show_cached_probabilities(self._viewer, cache)

    def _on_ended(self) -> None:
        self._run_ended()
