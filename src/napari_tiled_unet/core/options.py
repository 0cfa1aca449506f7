"""How to segment: one typed set of options, from the widget or the command line to the core.

:class:`SegmentOptions` holds what :func:`napari_tiled_unet.segment`, ``iter_segment``,
``segment_lazy`` and batch runs share (axes, tiling, normalisation, object size).  The
public functions still take these as keywords; they build the object once and pass it on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["SegmentOptions"]


@dataclass(frozen=True)
class SegmentOptions:
    """The options of a segmentation run (see :func:`napari_tiled_unet.segment`).

    Attributes
    ----------
    axes : str, optional
        One letter per dimension, e.g. ``"ZYX"``; required unless the image is 2D.
    tile_size : int or (int, int), optional
        Input tile size (rounded to a valid one); default: from ``memory_budget``.
    memory_budget : int or str, optional
        Activation memory per network call, in bytes or as text such as ``"300MB"`` or
        ``"1.5GiB"`` (default: a share of the memory available when the run starts, see
        :func:`~napari_tiled_unet.core.tiling.default_memory_budget`).
    batch_size : int, optional
        Tiles per network call (default: as many as the budget allows, at most 16).
    normalize : "auto", "percentile", "none", a normaliser or None
        Intensity normalisation.
    object_size : "auto", "none", float or None
        Typical object diameter in px, to resample to the model's object size.
    precision : {"float32", "bfloat16", "float16"}
        Arithmetic of the network (softmax and after always float32); a reduced precision
        the machine does not run natively falls back to float32 with one warning.
    tta : bool, str or sequence of str
        Test-time augmentation: average the softmax over flips and rotations (True or
        ``"all"``: 8, ``"flips"``: 4, or transform names); costs one network pass each.
    """

    axes: str | None = None
    tile_size: int | tuple[int, int] | None = None
    memory_budget: int | str | None = None
    batch_size: int | None = None
    normalize: Any = "auto"
    object_size: Any = None
    precision: str = "float32"
    tta: Any = False

    @classmethod
    def of(cls, options: SegmentOptions | None = None, **keywords: Any) -> SegmentOptions:
        """Return ``options`` (default: all defaults) with ``keywords`` replacing fields.

        An unknown keyword is a TypeError, as for a function's keyword arguments.
        """
        if options is None:
            return cls(**keywords)
        if not isinstance(options, SegmentOptions):
            raise TypeError(f"options must be SegmentOptions, got {type(options).__name__}")
        return dataclasses.replace(options, **keywords) if keywords else options

    def replace(self, **changes: Any) -> SegmentOptions:
        """Return a copy with ``changes`` (a shortcut for :func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)
