"""What a Segment run would do with the current choices, and what it leaves in the viewer.

The object size estimate and the tile plan shown under the form are kept by
:class:`RunPreview`, keyed by the choices they depend on, and handed to the run unchanged:
the plan shown before Run is the plan that runs.  :func:`show_cached_probabilities` shows a
finished run's cached probabilities.  The decisions themselves are functions of
:mod:`napari_tiled_unet.core.outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_tiled_unet._widgets._dock import layer_data
from napari_tiled_unet._widgets._layers import show_probabilities
from napari_tiled_unet._widgets._run_fields import memory_request
from napari_tiled_unet.core import outputs
from napari_tiled_unet.core.sizing import Rescale
from napari_tiled_unet.core.tiling import TilePlan
from napari_tiled_unet.core.tta import parse_tta

__all__ = ["Preview", "RunPreview", "show_cached_probabilities"]


@dataclass(frozen=True)
class Preview:
    """What a run with the form's current choices would do."""

    layout: Any
    rescale: Rescale
    #: The tile plan of one plane; None until the model's geometry is known.
    plan: TilePlan | None
    #: The plane on view, when only it is segmented.
    plane: tuple[int, ...] | None

    def describe(self, planes: int) -> str:
        """One line for the form: the resampling, the tiles and their memory."""
        if self.plan is None:
            return "Tiles: shown once the model has been loaded."
        text = outputs.describe_plan(self.plan, planes)
        scale = self.rescale.describe() if self.rescale.model_size else ""
        text = f"{scale}. {text}" if scale else text
        return text[0].upper() + text[1:]


class RunPreview:
    """The resampling and the tile plan of a run, recomputed only when a choice changes."""

    def __init__(self) -> None:
        self._scale: tuple[Any, Rescale] | None = None
        self._plan: tuple[Any, TilePlan] | None = None

    @staticmethod
    def layout(form: Any, layer: Any, meta: Any) -> Any:
        """Check the image's axes against the model's channels (one-line ValueError)."""
        channels = None if meta is None else meta.spec.input_channels
        shape, axes = layer_data(layer).shape, form.axes.value.strip().upper()
        return outputs.check_image(shape, axes, channels, rgb=bool(layer.rgb))

    def of(self, form: Any, layer: Any, meta: Any, point: Any) -> Preview:
        """Work out a run of ``layer`` with the choices of ``form`` and the model ``meta``.

        ``point`` is the viewer's current position (for "current plane").
        """
        layout, data = self.layout(form, layer, meta), layer_data(layer)
        plane = None
        if layout.plane_axes and form.stack.value == "current plane":
            axes = form.axes.value.strip().upper()
            plane = outputs.current_plane(axes, data.shape, layer.world_to_data(point))
        model_size = None if meta is None else meta.object_size
        rescale = self._rescale(data, layout, plane, form.object_size.value, model_size)
        if meta is None:
            return Preview(layout, rescale, None, plane)
        budget = memory_request(form)
        timed = (str(form.precision.value), parse_tta(bool(form.tta.value)))
        plan = self._tiles(
            data.shape, layout, meta.spec, form.tile_request, rescale.factor, budget, timed
        )
        return Preview(layout, rescale, plan, plane)

    def _rescale(
        self, data: Any, layout: Any, plane: Any, object_size: str, model_size: float | None
    ) -> Rescale:
        """Return the resampling a run would do (estimated once per image, plane, choice)."""
        key = (id(data), data.shape, layout.axes, plane, object_size, model_size)
        if self._scale is None or self._scale[0] != key:
            rescale = outputs.rescale_for_image(
                data, layout, model_size, object_size.strip() or None, plane=plane
            )
            self._scale = (key, rescale)
        return self._scale[1]

    def _tiles(
        self,
        shape: Any,
        layout: Any,
        spec: Any,
        tile_size: int,
        factor: float,
        budget: int | None = None,
        timed: tuple[str, tuple[str, ...]] = ("float32", ()),
    ) -> TilePlan:
        """Return the tile plan of a live run with these choices (planned once, shown, run).

        ``timed`` is the run's precision and test-time augmentation, whose tile timings on
        this machine (if tuned) the automatic tile follows.
        """
        key = (tuple(shape), layout.axes, spec, tile_size, factor, budget, timed)
        if self._plan is None or self._plan[0] != key:
            plan = outputs.plan_for_image(
                shape,
                layout,
                spec,
                tile_size=tile_size,
                factor=factor,
                memory_budget=budget,
                precision=timed[0],
                tta=timed[1],
            )
            plan = plan.with_batch_size(outputs.live_batch_size(plan))  # as the run will
            self._plan = (key, plan)
        return self._plan[1]


def show_cached_probabilities(viewer: Any, cache: dict[str, Any]) -> None:
    """Show a finished run's probabilities, one layer per class, under its labels."""
    show_probabilities(
        viewer,
        cache["image"].name,
        cache["probabilities"],
        cache["spatial"],
        cache["class_names"],
        below=cache["layer"],
    )
