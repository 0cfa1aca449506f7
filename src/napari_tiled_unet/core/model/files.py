"""Model files: one ``.keras`` file with weights, architecture and our metadata.

The metadata travels as an extra JSON member of the ``.keras`` zip archive, which Keras
itself ignores, and the architecture uses only built-in Keras layers, so a file written here
opens with a plain ``keras.saving.load_model`` in any Keras 3, without this package.
Models made elsewhere (a plain Keras U-Net saved as ``.keras`` or legacy ``.h5``) load too;
their geometry is read off the layers and checked.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.core.model.stock import to_stock_keras
from napari_tiled_unet.core.tiling import NetworkSpec

__all__ = [
    "METADATA_MEMBER",
    "ModelMetadata",
    "UNetModel",
    "load_model",
    "save_model",
    "to_stock_keras",
]

#: Name of the metadata member inside the ``.keras`` zip archive.
METADATA_MEMBER = "napari_tiled_unet.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about the model besides its weights.

    Attributes
    ----------
    input_channels, num_classes, depth, base_filters : int
        The network's shape.
    class_names : tuple of str
        One name per output class.
    normalization : dict, optional
        How inputs must be normalised, e.g. ``{"method": "percentile", "low": 1.0,
        "high": 99.8, "per": "plane"}``; None feeds data unchanged.
    fixed_input_size : tuple of int, optional
        Input ``(Y, X)`` of a model that accepts only one size.
    training : dict, optional
        Free-form record of how the model was trained.
    object_size : float, optional
        Typical object diameter (px) of the training labels: images whose objects are
        larger or smaller are resampled to this scale before segmenting.
    name, description : str
        Shown to users in model lists.
    padded_halo : int, optional
        Set for a network with padded ("same") convolutions, such as many U-Nets of the
        BioImage Model Zoo: the px cropped from each side of its output so that tiles fit
        seamlessly (see :class:`~napari_tiled_unet.core.tiling.NetworkSpec`).  None for the
        paper's valid convolutions.
    """

    input_channels: int = 1
    num_classes: int = 2
    depth: int = 4
    base_filters: int = 64
    class_names: tuple[str, ...] = ()
    normalization: dict[str, Any] | None = field(
        default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8, "per": "plane"}
    )
    fixed_input_size: tuple[int, int] | None = None
    training: dict[str, Any] | None = None
    object_size: float | None = None
    name: str = "unet"
    description: str = ""
    padded_halo: int | None = None

    def __post_init__(self) -> None:
        if not self.class_names:
            default = (
                ("background", "foreground")
                if self.num_classes == 2
                else ("background", "interior", "border")
                if self.num_classes == 3
                else tuple(f"class {k}" for k in range(self.num_classes))
            )
            object.__setattr__(self, "class_names", default)
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for a model with "
                f"{self.num_classes} classes; give one name per class"
            )

    @property
    def spec(self) -> NetworkSpec:
        """The geometry tiling needs."""
        return NetworkSpec(
            self.depth,
            self.base_filters,
            self.input_channels,
            self.num_classes,
            self.fixed_input_size,
            self.padded_halo,
        )

    def to_json(self) -> str:
        """Serialise (with a format version) as JSON text."""
        return json.dumps({"format_version": _FORMAT_VERSION, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse JSON written by :meth:`to_json`, ignoring unknown keys."""
        info = json.loads(text)
        known = {k: v for k, v in info.items() if k in cls.__dataclass_fields__}
        for key in ("class_names", "fixed_input_size"):
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        return cls(**known)


@dataclass
class UNetModel:
    """A Keras U-Net together with its metadata; what :func:`segment` runs.

    Attributes
    ----------
    keras_model : keras.Model
        Maps ``(B, Y, X, C)`` float32 to class probabilities ``(B, Y', X', K)``.
    metadata : ModelMetadata
        Geometry, class names, normalisation, training record.
    source : str, optional
        The file it was loaded from.
    """

    keras_model: Any
    metadata: ModelMetadata
    source: str | None = None
    _call: Any = field(default=None, repr=False)

    @property
    def spec(self) -> NetworkSpec:
        """The geometry tiling needs."""
        return self.metadata.spec

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a ``(B, Y, X, C)`` float32 batch; return float32 probabilities.

        The output has the size :meth:`NetworkSpec.output_size` gives (a padded network's
        output is cropped by its halo).
        """
        if self._call is None:
            self._call = _compiled_call(self.keras_model)
        out = np.asarray(self._call(np.ascontiguousarray(batch, dtype=np.float32)))
        crop = self.metadata.padded_halo
        if crop:  # a padded network: drop the border its padding disturbs
            out = out[:, crop:-crop, crop:-crop]
        if out.shape[-1] == 1:  # a single sigmoid output: foreground probability
            out = np.concatenate([1.0 - out, out], axis=-1)
        return out.astype(np.float32, copy=False)


def _compiled_call(keras_model: Any) -> Any:
    """Return a graph-compiled inference call that accepts any batch and tile size."""
    from napari_tiled_unet.core._keras import get_tf

    tf = get_tf()
    channels = keras_model.inputs[0].shape[-1]
    spec = tf.TensorSpec((None, None, None, channels), tf.float32)

    @tf.function(input_signature=[spec], reduce_retracing=True)
    def call(x: Any) -> Any:
        return keras_model(x, training=False)

    return call


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
