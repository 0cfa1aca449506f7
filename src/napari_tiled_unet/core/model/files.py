"""Model files: one ``.keras`` file with weights, architecture and our metadata.

The metadata travels as an extra JSON member of the ``.keras`` zip archive, which Keras
itself ignores, and the architecture uses only built-in Keras layers, so a file written here
opens with a plain ``keras.saving.load_model`` in any Keras 3, without this package.
Models made elsewhere (a plain Keras U-Net saved as ``.keras`` or legacy ``.h5``) load too;
their geometry is read off the layers and checked.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from napari_tiled_unet.core.model.stock import to_stock_keras
from napari_tiled_unet.core.model.types import (
    METADATA_MEMBER,
    ModelMetadata,
    UNetModel,
)

__all__ = [
    "METADATA_MEMBER",
    "ModelMetadata",
    "UNetModel",
    "load_model",
    "save_model",
    "to_stock_keras",
]


def save_model(
    model: UNetModel | Any,
    path: str | os.PathLike[str],
    *,
    metadata: ModelMetadata | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``model`` (weights, architecture and metadata) to one ``.keras`` file.

    The file is written under a temporary name in the target folder and renamed when
    complete, so a failed save never leaves a half-written model.  Custom layers of models
    from earlier versions are replaced by built-in ones (:func:`to_stock_keras`), so the file
    loads with plain Keras.

    Parameters
    ----------
    model : UNetModel or keras.Model
        The model; a bare Keras model gets metadata read off its layers.
    path : path-like
        Destination ending in ``.keras``.
    metadata : ModelMetadata, optional
        Overrides the model's metadata.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files end in .keras, got {path.name!r}; rename the target")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    unet = model if isinstance(model, UNetModel) else wrap_keras_model(model)
    meta = metadata or unet.metadata
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".keras", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        to_stock_keras(unet.keras_model).save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_MEMBER, meta.to_json())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; use the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_model(path: str | os.PathLike[str]) -> UNetModel:
    """Load a U-Net for inference from a ``.keras`` (or legacy ``.h5``) file.

    Loads with ``compile=False`` and Keras safe mode (no arbitrary code from the file).
    A plain Keras U-Net with a fixed input (as in the paper's 572 x 572 network) is moved
    into a fully convolutional twin when its weights fit one, so any tile size works.
    A bioimage.io package (zip, folder or its yaml) loads its Keras weights with the
    geometry and preprocessing it describes (see :mod:`napari_tiled_unet.core.model.zoo`).

    Parameters
    ----------
    path : path-like
        The model file, or a bioimage.io package.

    Returns
    -------
    UNetModel

    Raises
    ------
    FileNotFoundError, ValueError
        With one line that says what is wrong with the file.
    ImportError
        For a bioimage.io package without the ``bioimageio`` extra installed.
    """
    from napari_tiled_unet.core.model.inspect import keras_load, metadata_of, read_metadata
    from napari_tiled_unet.core.model.zoo import is_bioimageio_source, load_bioimageio_model

    path = Path(path)
    if is_bioimageio_source(path):
        return load_bioimageio_model(path)
    keras_model = keras_load(path)
    stored = read_metadata(path)
    meta = metadata_of(keras_model, stored, source=path.name)
    unet = UNetModel(keras_model, meta, source=str(path))
    if meta.fixed_input_size is not None and stored is None:
        from napari_tiled_unet.core.model.inspect import fully_convolutional_twin

        twin = fully_convolutional_twin(unet)
        if twin is not None:
            unet = UNetModel(twin, replace(meta, fixed_input_size=None), source=str(path))
    return unet


def wrap_keras_model(keras_model: Any, **overrides: Any) -> UNetModel:
    """Wrap an in-memory Keras U-Net, reading its geometry off its layers."""
    from napari_tiled_unet.core.model.inspect import metadata_of

    meta = metadata_of(keras_model, None, source=getattr(keras_model, "name", "model"))
    return UNetModel(keras_model, replace(meta, **overrides) if overrides else meta)
