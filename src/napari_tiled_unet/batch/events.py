"""Events, options and results of batch runs (frozen dataclasses; see :mod:`.batch`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from napari_tiled_unet.core.options import (
    DEFAULT_MIN_CONTRAST,
    DEFAULT_MIN_SIZE,
    DEFAULT_OUTPUT,
    SegmentOptions,
    check_output,
    output_kind,
)

__all__ = [
    "BatchEvent",
    "BatchOptions",
    "BatchSummary",
    "FileFinished",
    "FileResult",
    "FileStarted",
    "PlaneProgress",
    "Status",
]

Status = Literal["done", "skipped", "failed", "cancelled"]


@dataclass(frozen=True)
class BatchOptions(SegmentOptions):
    """Parameters of a batch run (all recorded in the run record).

    The options of :class:`~napari_tiled_unet.core.options.SegmentOptions`, and those of
    files.

    Attributes
    ----------
    axes : str, optional
        Axes of every input (default: from each file's metadata).
    tile_size, memory_budget, batch_size :
        Tiling, as for :func:`~napari_tiled_unet.segment` (``memory_budget`` also as text,
        e.g. ``"2GB"``).
    precision, tta :
        Arithmetic of the network and test-time augmentation, as for
        :func:`~napari_tiled_unet.segment`.
    normalize : str
        "auto", "percentile" or "none".
    probabilities : bool
        Also write ``<stem>_probabilities.tif``.
    probability_dtype : {"float32", "float16"}
        Its pixel type.
    overwrite : bool
        Redo inputs whose outputs exist.
    max_plane_bytes : int
        Working memory above which a plane is read and written tile row by tile row.
    output : {"auto", "classes", "instances"}
        What ``<stem>_labels.tif`` holds: class labels, or instance labels (objects numbered
        per plane, uint16; needs whole planes).  "auto": instances for models with a border
        class (3 classes), classes otherwise
        (:func:`~napari_tiled_unet.core.options.output_kind`).
    min_size : int
        Instances smaller than this many pixels are dropped (default 20,
        :data:`~napari_tiled_unet.core.options.DEFAULT_MIN_SIZE`).
    min_contrast : float
        Instances fainter than this fraction of the typical object of their plane are
        dropped (:func:`~napari_tiled_unet.core.postprocess.drop_faint`); 0 keeps all.
    object_size : "auto", "none", float or None
        Typical object diameter of the inputs in px, as for
        :func:`~napari_tiled_unet.segment` (None: "auto" for models that record their
        object size); "auto" estimates it per file.
    """

    tile_size: int | None = None
    normalize: str = "auto"
    probabilities: bool = False
    probability_dtype: str = "float32"
    overwrite: bool = False
    max_plane_bytes: int = 2**30
    output: str = DEFAULT_OUTPUT
    min_size: int = DEFAULT_MIN_SIZE
    min_contrast: float = DEFAULT_MIN_CONTRAST

    def __post_init__(self) -> None:
        check_output(self.output, self.min_size)
        if not 0 <= self.min_contrast < 1:
            raise ValueError(f"min_contrast must be in [0, 1), got {self.min_contrast!r}")
        if self.probability_dtype not in ("float32", "float16"):
            raise ValueError(
                f"probability_dtype must be 'float32' or 'float16', got {self.probability_dtype!r}"
            )
        from napari_tiled_unet.core.sizing import parse_object_size

        parse_object_size(self.object_size)
        if self.normalize not in ("auto", "percentile", "none"):
            raise ValueError(f"normalize must be auto, percentile or none, got {self.normalize!r}")
        from napari_tiled_unet.core.precision import check_precision
        from napari_tiled_unet.core.tta import parse_tta

        check_precision(self.precision)
        parse_tta(self.tta)
        if isinstance(self.memory_budget, str):
            from napari_tiled_unet.core.tiling import parse_bytes

            parse_bytes(self.memory_budget)

    def instances_for(self, num_classes: int) -> bool:
        """Whether the labels written for a model of ``num_classes`` are instances."""
        return output_kind(num_classes, self.output) == "instances"


@dataclass(frozen=True)
class FileResult:
    """What happened to one input.

    Attributes
    ----------
    input : str
        The input path.
    status : {"done", "skipped", "failed", "cancelled"}
        ``skipped``: its outputs existed; ``cancelled``: the run stopped during it.
    message : str
        One line: why it failed or was skipped.
    outputs : tuple of str
        Paths of its outputs (written or already there).
    shape, axes, dtype :
        The input's shape, the axes used and its pixel type.
    n_planes : int
        Planes segmented.
    seconds : float
        Time spent on it.
    details : dict
        Tile plan, normalisation, calibration, output axes.
    """

    input: str
    status: Status
    message: str = ""
    outputs: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    axes: str = ""
    dtype: str = ""
    n_planes: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileStarted:
    """A file is about to be segmented (``number`` counts from 0 over ``n_files``).

    ``scale`` says how its planes are resampled to the model's object size, e.g.
    ``"objects ~45 px -> image scaled x0.44"`` ("" when the model records no size).
    """

    number: int
    n_files: int
    path: Path
    shape: tuple[int, ...]
    axes: str
    n_planes: int
    scale: str = ""


@dataclass(frozen=True)
class PlaneProgress:
    """Tiles of a plane are done; ``tiles_done == n_tiles`` when the plane is written."""

    number: int
    n_files: int
    path: Path
    plane: int
    n_planes: int
    tiles_done: int
    n_tiles: int

    @property
    def fraction(self) -> float:
        """Fraction of the current file done, in [0, 1]."""
        return (self.plane + self.tiles_done / self.n_tiles) / self.n_planes

    @property
    def run_fraction(self) -> float:
        """Fraction of the whole run done, counting every file as one unit, in [0, 1]."""
        return (self.number + self.fraction) / self.n_files


@dataclass(frozen=True)
class FileFinished:
    """A file is finished, skipped, failed or cancelled."""

    number: int
    n_files: int
    result: FileResult


#: What :func:`iter_batch` yields.
BatchEvent = Union[FileStarted, PlaneProgress, FileFinished]  # noqa: UP007 - a runtime alias


@dataclass(frozen=True)
class BatchSummary:
    """Outcome of a run: one :class:`FileResult` per input, in order."""

    files: tuple[FileResult, ...]
    record: Path | None
    cancelled: bool = False

    def count(self, status: Status) -> int:
        """Return the number of files with ``status``."""
        return sum(f.status == status for f in self.files)

    @property
    def ok(self) -> bool:
        """True when no file failed and the run was not cancelled."""
        return not self.cancelled and self.count("failed") == 0
