"""int8 in batch runs: one calibration per run, on planes spread over the run's inputs (ring 2).

The core's :func:`~napari_tiled_unet.core.int8.int8_model` quantises and checks the network;
this module hands it planes read from the input files, normalised and resampled as the
engine will do when it segments them.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.batch.files import PlaneReader, TiffSource
from napari_tiled_unet.batch.plan import FileJob, plan_file, streamed_scale
from napari_tiled_unet.core.predict import normalized_plane
from napari_tiled_unet.core.prepare import spread_out
from napari_tiled_unet.core.sizing import resize

__all__ = ["CALIBRATION_FILES", "calibrated_runner"]

#: Inputs (first, middle, last) whose middle planes calibrate a run.
CALIBRATION_FILES = 3


def _plane_source(job: FileJob) -> tuple[Any, Any]:
    """Return the middle plane of ``job`` as the engine will see it: ``(plane, scale)``."""
    reader = PlaneReader(job.source, job.order[len(job.order) // 2], job.layout)
    scale = None
    if job.normalizer is not None and job.normalizer.per == "stack":
        everything = [PlaneReader(job.source, index, job.layout) for index in job.order]
        scale = streamed_scale(job, everything)
    if job.streamed:  # tiles are read box by box and normalised as they are cut
        if job.normalizer is not None and scale is None:
            scale = streamed_scale(job, [reader])
        return reader, scale
    plane = normalized_plane(np.asarray(reader), job.normalizer, scale)
    return (resize(plane, job.plan.shape) if job.rescale.active else plane), None


def calibrated_runner(unet: Any, files: list[Path], options: Any) -> Any:
    """Return ``unet`` quantised for this run, if it is an int8 model not yet calibrated.

    The middle planes of up to :data:`CALIBRATION_FILES` inputs spread over ``files``
    calibrate it, with the tile size of the first readable one; inputs that cannot be read
    are left to the run, which reports them.  Any other model is returned as it is.
    """
    if unet.calibrated or not files:
        return unet
    from napari_tiled_unet.core.int8 import int8_model

    picks = spread_out(list(range(len(files))), CALIBRATION_FILES)
    sources, plan = [], None
    with ExitStack() as stack:
        for k in picks:
            try:
                source = stack.enter_context(TiffSource(files[k]))
                job = plan_file(source, unet, options)
                sources.append(_plane_source(job))
            except Exception:  # the run itself says why this file cannot be segmented
                continue
            plan = plan or job.plan
        if plan is None:
            return unet
        return int8_model(unet, sources, plan)
