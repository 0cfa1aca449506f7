"""Checking an image against a model before segmenting it (core ring, numpy only).

:func:`prepare` resolves the model and the normaliser, validates axes and channels and plans
the tiles of one plane; :mod:`napari_tiled_unet.core.predict` and the batch engine both start here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_tiled_unet.core.axes import AxesLayout, parse_axes, to_canonical
from napari_tiled_unet.core.normalize import (
    MeanStdNormalizer,
    Normalizer,
    PercentileNormalizer,
    check_dtype,
    normalizer_from_dict,
)
from napari_tiled_unet.core.options import SegmentOptions
from napari_tiled_unet.core.sizing import Rescale, plan_rescale, scaled_shape
from napari_tiled_unet.core.tiling import TilePlan, plan_tiles

__all__ = [
    "Prepared",
    "Scale",
    "check_channels",
    "estimation_planes",
    "prepare",
    "resolve_model",
    "resolve_normalizer",
    "runner",
    "runtime_of",
    "spread_out",
    "stack_statistics",
    "tuned",
]

#: The statistics ``(low, high)`` of a normaliser, one value per channel.
Scale = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Prepared:
    """An image checked against a model and ready to be segmented plane by plane.

    Attributes
    ----------
    unet : UNetModel
        The network.
    layout : AxesLayout
        How the image's axes map onto ``(planes, Y, X, C)``.
    canonical : array-like
        The image viewed as ``(*planes, Y, X, C)`` (lazy arrays stay lazy).
    normalizer : PercentileNormalizer, MeanStdNormalizer or None
        Intensity normalisation.
    plan : TilePlan
        Tile plan of one plane, on the model's grid (see ``rescale``).
    rescale : Rescale
        How planes are resampled to the model's object size (``plan.shape`` is the
        resampled ``(Y, X)``; results are resampled back to :attr:`image_shape`).
    """

    unet: Any
    layout: AxesLayout
    canonical: Any
    normalizer: Normalizer | None
    plan: TilePlan
    rescale: Rescale = field(default_factory=Rescale)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(Y, X)`` of the image's planes."""
        return int(self.canonical.shape[-3]), int(self.canonical.shape[-2])

    @property
    def plane_shape(self) -> tuple[int, ...]:
        """Shape of the leading (plane) axes."""
        return tuple(self.canonical.shape[:-3])


def resolve_model(model: Any) -> Any:
    """Return a :class:`UNetModel` for a model object or file path (TypeError otherwise)."""
    from napari_tiled_unet.core.model.files import UNetModel, load_model, wrap_keras_model

    if isinstance(model, UNetModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if hasattr(model, "inputs") and hasattr(model, "layers"):
        return wrap_keras_model(model)
    raise TypeError(
        f"model must be a UNetModel, a Keras model or a model file path, "
        f"got {type(model).__name__}"
    )


def runner(unet: Any, options: SegmentOptions) -> Any:
    """Return the variant of ``unet`` with the precision and augmentation of ``options``.

    A precision the machine does not run natively falls back to float32 with one warning.
    A model that is already a variant keeps its precision and augmentation where the
    options leave them at their defaults.
    """
    from napari_tiled_unet.core.precision import check_precision, effective_precision
    from napari_tiled_unet.core.tta import parse_tta

    tta = parse_tta(options.tta) or unet.tta
    precision = check_precision(options.precision)
    if precision == "float32" or precision == unet.precision:
        return unet.variant(precision=unet.precision, tta=tta)
    return unet.variant(precision=effective_precision(precision), tta=tta)


def runtime_of(unet: Any) -> str:
    """Return what runs ``unet``'s network: ``"onnxruntime"`` for int8, else ``"tensorflow"``."""
    return "onnxruntime" if unet.precision == "int8" else "tensorflow"


def resolve_normalizer(normalize: Any, unet: Any) -> Normalizer | None:
    """Turn ``normalize`` ("auto", "percentile", None/"none" or a normaliser) into one."""
    if normalize is None or normalize == "none":
        return None
    if isinstance(normalize, (PercentileNormalizer, MeanStdNormalizer)):
        return normalize
    if normalize == "auto":
        return normalizer_from_dict(unet.metadata.normalization)
    if normalize == "percentile":
        return PercentileNormalizer()
    raise ValueError(
        f"normalize must be 'auto', 'percentile', None or a PercentileNormalizer, "
        f"got {normalize!r}"
    )


def check_channels(channels: int, layout: AxesLayout, unet: Any) -> None:
    """Raise a one-line ValueError if the image's channels do not fit the model."""
    want = unet.spec.input_channels
    if channels != want:
        where = (
            f"axis {layout.axes[layout.channel_axis]}"
            if layout.channel_axis is not None
            else "no channel axis"
        )
        raise ValueError(
            f"the image has {channels} channel(s) ({where}) but the model expects "
            f"{want}; pick {'one channel' if want == 1 else f'{want} channels'} "
            f"or a model made for this image{_planes_hint(layout, want)}"
        )


def _planes_hint(layout: AxesLayout, want: int) -> str:
    """Suggest reading a channel axis before Y and X (planar samples) as Z, if that fits."""
    channel = layout.channel_axis
    if want != 1 or channel is None or "Z" in layout.axes:
        return ""
    if channel > min(layout.axes.index("Y"), layout.axes.index("X")):
        return ""  # interleaved samples (e.g. RGB) are colours, not planes
    axes = layout.axes[:channel] + "Z" + layout.axes[channel + 1 :]
    return f"; if its samples are planes of a stack, pass axes {axes!r} (--axes {axes})"


def _as_array(image: Any) -> Any:
    """Arrays stay as they are (lazily, e.g. dask); others become numpy.

    Zarr arrays arrive as dask arrays (:func:`napari_tiled_unet.batch.segment.as_array`).
    Raises a one-line TypeError for pixel types that are not real numbers (e.g. complex).
    """
    if isinstance(image, np.ndarray) or hasattr(image, "transpose"):
        array = image
    else:
        array = np.asarray(image)
    check_dtype(array.dtype)
    return array


def prepare(
    model: Any,
    image: Any,
    options: SegmentOptions | None = None,
    *,
    plan: TilePlan | None = None,
    **keywords: Any,
) -> Prepared:
    """Check ``image`` against ``model`` and plan its tiles (options as for ``segment``).

    ``plan`` is a tile plan made beforehand (e.g. the one shown to the user before a run);
    it is checked against the image and the model and used instead of a new one.
    """
    options = SegmentOptions.of(options, **keywords)
    unet = runner(resolve_model(model), options)
    image = _as_array(image)
    layout = parse_axes(options.axes, tuple(np.shape(image)))
    canonical = to_canonical(image, layout)
    check_channels(canonical.shape[-1], layout, unet)
    normalizer = resolve_normalizer(options.normalize, unet)
    rescale = plan_rescale(
        options.object_size,
        unet.metadata.object_size,
        lambda: estimation_planes(canonical.shape[:-3], lambda i: canonical[i]),
    )
    shape = scaled_shape((int(canonical.shape[-3]), int(canonical.shape[-2])), rescale.factor)
    if plan is None:
        plan = plan_tiles(
            shape,
            unet.spec,
            tile_size=options.tile_size,
            memory_budget=options.memory_budget,
            batch_size=options.batch_size,
            timings=tuned(unet) if options.tile_size is None else None,
            runtime=runtime_of(unet),
        )
    elif plan.shape != shape or plan.halo != unet.spec.halo:
        raise ValueError(
            f"the tile plan is for a {plan.shape} plane with a {plan.halo} px halo, but this "
            f"image's planes are {shape} and the model's halo is {unet.spec.halo} px; "
            "plan the tiles again"
        )
    return Prepared(unet, layout, canonical, normalizer, plan, rescale)


def tuned(unet: Any) -> Any:
    """Return this machine's tile timings of ``unet``'s network and precision, or None."""
    from napari_tiled_unet.core.timings import cached_timings

    return cached_timings(unet.spec, unet.precision, unet.tta)


def spread_out(items: list[Any], count: int) -> list[Any]:
    """Up to ``count`` of ``items``, evenly spaced from the first to the last, in order."""
    if not items:
        return []
    return [items[k] for k in sorted({int(k) for k in np.linspace(0, len(items) - 1, count)})]


def estimation_planes(plane_shape: tuple[int, ...], read: Any, count: int = 3) -> list[np.ndarray]:
    """Up to ``count`` evenly spaced ``(Y, X)`` planes (channels averaged) to estimate from.

    ``read(index)`` returns the ``(Y, X, C)`` plane at ``index`` of the leading axes.
    """
    picks = spread_out(list(np.ndindex(*plane_shape)), count)
    return [np.asarray(read(i), dtype=np.float32).mean(axis=-1) for i in picks]


def stack_statistics(job: Prepared) -> Scale:
    """Percentiles over the whole stack; a lazy stack is read one plane at a time."""
    data, normalizer = job.canonical, job.normalizer
    assert normalizer is not None
    if isinstance(data, np.ndarray):
        return normalizer.statistics(data)
    from napari_tiled_unet.core.percentile import blocks_reducer, normalizer_statistics

    planes = list(np.ndindex(*job.plane_shape))
    channels = data.shape[-1]
    return normalizer_statistics(
        normalizer,
        blocks_reducer(lambda: (np.asarray(data[p]).reshape(-1, channels) for p in planes)),
        dtype=data.dtype,
        channels=channels,
        count=int(np.prod(data.shape[:-1])),
    )
