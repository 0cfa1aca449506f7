"""What runs in the Segment widget's worker thread: load the model once, then segment.

No Qt and no layers here: the generator only yields data (a :class:`ModelLoaded` message,
then the core's :class:`~napari_tiled_unet.core.predict.TileProgress` events) and returns the
:class:`~napari_tiled_unet.core.predict.SegmentationResult`; the main thread updates the viewer.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_tiled_unet.core.options import SegmentOptions
from napari_tiled_unet.core.tiling import TilePlan

__all__ = ["Job", "ModelLoaded", "model_key", "segment_steps"]


@dataclass(frozen=True)
class ModelLoaded:
    """First message of a run that had to load its model, so the widget can keep it."""

    key: tuple[str, int, int]
    unet: Any


@dataclass(frozen=True)
class Job:
    """Everything a run needs, checked on the main thread before the worker starts.

    Attributes
    ----------
    model : UNetModel or pathlib.Path
        A model loaded by an earlier run, or the file to load.
    key : tuple
        Identity of the model file (path, modification time, size).
    image : array-like
        The layer's data (full resolution of a multiscale layer).
    options : SegmentOptions
        Axes, tiling, normalisation and object size.
    planes : list of tuple of int, optional
        The planes to segment (default: all).
    plan : TilePlan, optional
        The tile plan of one plane, as shown before Run (default: planned by the run).
    """

    model: Any
    key: tuple[str, int, int]
    image: Any
    options: SegmentOptions = field(default_factory=SegmentOptions)
    planes: list[tuple[int, ...]] | None = None
    plan: TilePlan | None = None


def model_key(path: str | Path) -> tuple[str, int, int]:
    """Identify a model file by path, modification time and size (a changed file reloads)."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def segment_steps(job: Job) -> Generator[Any, None, Any]:
    """Run ``job``: yield :class:`ModelLoaded` (if loading), then every tile event.

    Closing the generator (a cancelled worker) closes the core's generator too, which
    stops after the batch of tiles in progress.

    Returns
    -------
    SegmentationResult
    """
    from napari_tiled_unet.batch.segment import iter_segment
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.files import UNetModel, load_model

    get_keras()  # isolated from Mesa's LLVM, see _keras._isolated_dlopen
    unet = job.model
    if not isinstance(unet, UNetModel):
        unet = load_model(unet)
        yield ModelLoaded(job.key, unet)
    return (
        yield from iter_segment(unet, job.image, job.options, planes=job.planes, plan=job.plan)
    )
