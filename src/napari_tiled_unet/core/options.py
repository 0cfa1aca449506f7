"""How to segment: one typed set of options, from the widget or the command line to the core.

:class:`SegmentOptions` holds what :func:`napari_tiled_unet.segment`, ``iter_segment``,
``segment_lazy`` and batch runs share (axes, tiling, normalisation, object size).  The
public functions still take these as keywords; they build the object once and pass it on.

The output policy lives here too, so that the Segment widget, the Batch widget, the command
line and the demo make the same labels by default: :data:`DEFAULT_OUTPUT` ("auto") means
instance labels for models with a border class (background, interior, border) and class
labels otherwise (:func:`output_kind`), and instances smaller than :data:`DEFAULT_MIN_SIZE`
pixels are dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_MIN_CONTRAST",
    "DEFAULT_MIN_SIZE",
    "DEFAULT_OUTPUT",
    "OUTPUT_CHOICES",
    "SegmentOptions",
    "check_output",
    "output_kind",
]

#: What the labels hold unless asked otherwise (see :func:`output_kind`).
DEFAULT_OUTPUT = "auto"
#: Instances smaller than this many pixels are dropped unless asked otherwise.
DEFAULT_MIN_SIZE = 20
#: Instances fainter than this fraction of the typical object of their plane are dropped
#: (see :func:`napari_tiled_unet.core.postprocess.drop_faint`).  Otsu's threshold sits near
#: half-way between the background and a typical nucleus, so 0.3 still keeps nuclei that a
#: global threshold misses; on hand-annotated nuclei (DSB2018) F1 levels off from 0.3 on.
DEFAULT_MIN_CONTRAST = 0.3
#: The output requests every entry point accepts.
OUTPUT_CHOICES = ("auto", "classes", "instances")
#: Classes of a model with a border class: background, interior, border.
_BORDER_MODEL_CLASSES = 3


def check_output(requested: str, min_size: int = DEFAULT_MIN_SIZE) -> None:
    """Refuse an unknown output request or a negative minimum size (one-line ValueError)."""
    if requested not in OUTPUT_CHOICES:
        raise ValueError(
            f"output must be one of {', '.join(OUTPUT_CHOICES)}, got {requested!r}; "
            f"leave it at {DEFAULT_OUTPUT!r} for the model's natural output"
        )
    if min_size < 0:
        raise ValueError(f"the minimum object size must be 0 or more pixels, got {min_size!r}")


def output_kind(
    n_classes: int, requested: str = DEFAULT_OUTPUT
) -> Literal["classes", "instances"]:
    """Return what the labels of a model with ``n_classes`` classes hold for ``requested``.

    Parameters
    ----------
    n_classes : int
        Output classes of the model (background included).
    requested : {"auto", "classes", "instances"}
        ``"auto"``: instances for models with a border class (3 classes), so that touching
        objects come out separate; class labels otherwise.

    Returns
    -------
    {"classes", "instances"}

    Examples
    --------
    >>> output_kind(3), output_kind(2), output_kind(2, "instances")
    ('instances', 'classes', 'instances')
    """
    check_output(requested)
    if requested == "auto":
        return "instances" if n_classes == _BORDER_MODEL_CLASSES else "classes"
    return "instances" if requested == "instances" else "classes"


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
