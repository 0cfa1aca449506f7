"""The original U-Net (Ronneberger et al. 2015) with exact overlap-tile inference.

Importing this package is cheap: TensorFlow/Keras are imported only when a function that
needs them is called.  The code lives in three rings, each importing only the ones before:
:mod:`~napari_tiled_unet.core` (arrays and models), :mod:`~napari_tiled_unet.batch` and
:mod:`~napari_tiled_unet.cli` (files, stacks, Dask, the command line) and ``_widgets``
(napari).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_tiled_unet._version import __version__

# Public name -> module that defines it.  Resolved lazily (PEP 562) so that
# ``import napari_tiled_unet`` never imports TensorFlow, Qt or napari.
_EXPORTS = {
    "build_unet": "napari_tiled_unet.core.model.builder",
    "UNetModel": "napari_tiled_unet.core.model.files",
    "ModelMetadata": "napari_tiled_unet.core.model.files",
    "load_model": "napari_tiled_unet.core.model.files",
    "save_model": "napari_tiled_unet.core.model.files",
    "valid_input_sizes": "napari_tiled_unet.core.model.geometry",
    "output_size": "napari_tiled_unet.core.model.geometry",
    "halo": "napari_tiled_unet.core.model.geometry",
    "nearest_valid_input_size": "napari_tiled_unet.core.model.geometry",
    "is_valid_input_size": "napari_tiled_unet.core.model.geometry",
    "PercentileNormalizer": "napari_tiled_unet.core.normalize",
    "NonFiniteWarning": "napari_tiled_unet.core.normalize",
    "segment": "napari_tiled_unet.batch.segment",
    "iter_segment": "napari_tiled_unet.batch.segment",
    "SegmentationResult": "napari_tiled_unet.core.predict",
    "TileProgress": "napari_tiled_unet.core.predict",
    "plan_tiles": "napari_tiled_unet.core.tiling",
    "tune_tiles": "napari_tiled_unet.core.autotune",
    "TrainConfig": "napari_tiled_unet.core.train.config",
    "TrainProgress": "napari_tiled_unet.core.train.config",
    "iter_train": "napari_tiled_unet.core.train.trainer",
    "train_unet": "napari_tiled_unet.core.train.trainer",
    "TilePlan": "napari_tiled_unet.core.tiling",
    "weight_map": "napari_tiled_unet.core.train.weightmap",
    "estimate_object_size": "napari_tiled_unet.core.sizing",
    "segment_to_zarr": "napari_tiled_unet.batch.segment",
    "iter_batch": "napari_tiled_unet.batch.run",
    "run_batch": "napari_tiled_unet.batch.run",
    "export_bioimageio": "napari_tiled_unet.batch.bioimageio",
}

__all__ = ["__version__", *_EXPORTS]


# Public names that differ from the name inside their module.
_RENAMED = {"train_unet": "train"}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), _RENAMED.get(name, name))


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for static type checkers only
    from napari_tiled_unet.batch.bioimageio import export_bioimageio
    from napari_tiled_unet.batch.run import iter_batch, run_batch
    from napari_tiled_unet.batch.segment import iter_segment, segment, segment_to_zarr
    from napari_tiled_unet.core.autotune import tune_tiles
    from napari_tiled_unet.core.model.builder import build_unet
    from napari_tiled_unet.core.model.files import ModelMetadata, UNetModel, load_model, save_model
    from napari_tiled_unet.core.model.geometry import (
        halo,
        is_valid_input_size,
        nearest_valid_input_size,
        output_size,
        valid_input_sizes,
    )
    from napari_tiled_unet.core.normalize import NonFiniteWarning, PercentileNormalizer
    from napari_tiled_unet.core.predict import SegmentationResult, TileProgress
    from napari_tiled_unet.core.sizing import estimate_object_size
    from napari_tiled_unet.core.tiling import TilePlan, plan_tiles
    from napari_tiled_unet.core.train.config import TrainConfig, TrainProgress
    from napari_tiled_unet.core.train.trainer import iter_train
    from napari_tiled_unet.core.train.trainer import train as train_unet
    from napari_tiled_unet.core.train.weightmap import weight_map
