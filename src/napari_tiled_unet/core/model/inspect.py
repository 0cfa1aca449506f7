"""Reading Keras model files and checking that they are valid-convolution U-Nets."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.core.model.geometry import output_size, smallest_valid_input_size
from napari_tiled_unet.core.model.types import METADATA_MEMBER, ModelMetadata, UNetModel

__all__ = [
    "fully_convolutional_twin",
    "keras_load",
    "metadata_of",
    "read_metadata",
    "read_package_metadata",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist; check the path")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not a model file; save the model with "
            "model.save('name.keras') and choose that file"
        )
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"{path.name} is not a Keras model file (not a .keras zip "
                "archive); choose a model saved with model.save('name.keras')"
            )
    elif suffix in (".h5", ".hdf5"):
        with open(path, "rb") as handle:
            if handle.read(8) != _HDF5_SIGNATURE:
                raise ValueError(
                    f"{path.name} is not an HDF5 file; choose a Keras .keras or .h5 model file"
                )
    else:
        raise ValueError(f"{path.name} is not a model file; choose a Keras .keras or .h5 file")


def keras_load(path: Path) -> Any:
    """Load a Keras model for inference (``compile=False``, safe mode) or raise one line."""
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.layers import custom_objects

    _check_file(path)
    keras = get_keras()
    try:
        return keras.saving.load_model(
            path, custom_objects=custom_objects(), compile=False, safe_mode=True
        )
    except Exception as exc:  # Keras raises many types; the user needs one sentence.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"could not load {path.name} as a Keras model ({reason[:200]})") from exc


def read_metadata(path: Path) -> ModelMetadata | None:
    """Return the metadata stored in a ``.keras`` file by this package, or None."""
    if path.suffix.lower() != ".keras":
        return None
    with zipfile.ZipFile(path) as archive:
        if METADATA_MEMBER not in archive.namelist():
            return None
        return ModelMetadata.from_json(archive.read(METADATA_MEMBER).decode("utf-8"))


def read_package_metadata(path: Path) -> ModelMetadata | None:
    """Return the metadata of the ``.keras`` file inside a bioimage.io zip we exported."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(".keras") and "/" not in name:
                with zipfile.ZipFile(io.BytesIO(archive.read(name))) as inner:
                    if METADATA_MEMBER in inner.namelist():
                        return ModelMetadata.from_json(inner.read(METADATA_MEMBER).decode())
    return None


def _shape_facts(keras_model: Any, source: str) -> tuple[tuple[Any, Any], int, int]:
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise ValueError(
            f"{source} has {len(keras_model.inputs)} inputs and "
            f"{len(keras_model.outputs)} outputs; a U-Net has one of each"
        )
    in_shape, out_shape = keras_model.inputs[0].shape, keras_model.outputs[0].shape
    if len(in_shape) != 4 or len(out_shape) != 4 or in_shape[-1] is None:
        raise ValueError(
            f"{source} maps {tuple(in_shape)} to {tuple(out_shape)}; expected a "
            "2D image model (batch, Y, X, channels) -> (batch, Y, X, classes)"
        )
    return (in_shape[1], in_shape[2]), int(in_shape[-1]), int(out_shape[-1])


def _layer_facts(keras_model: Any) -> tuple[int, int]:
    """Return (depth, base_filters) read off the layers: poolings and the first conv."""
    pools = [
        layer
        for layer in keras_model.layers
        if type(layer).__name__ in ("MaxPooling2D", "MaxPool2D")
    ]
    convs = [layer for layer in keras_model.layers if type(layer).__name__ == "Conv2D"]
    base = int(convs[0].filters) if convs else 1
    return len(pools), base


def _check_geometry(keras_model: Any, size: tuple[int, int], depth: int, source: str) -> None:
    expected = tuple(output_size(s, depth) for s in size)
    got = tuple(keras_model.compute_output_shape((1, *size, keras_model.inputs[0].shape[-1]))[1:3])
    if None in expected or got != expected:
        raise ValueError(
            f"{source} is not a valid-convolution U-Net: a {size[0]}x{size[1]} "
            f"input gives {got[0]}x{got[1]}, expected "
            f"{expected[0]}x{expected[1]} for {depth} poolings"
        )


def metadata_of(keras_model: Any, stored: ModelMetadata | None, *, source: str) -> ModelMetadata:
    """Check ``keras_model`` and return its metadata (stored, or read off its layers)."""
    size, channels, out_channels = _shape_facts(keras_model, source)
    depth, base = _layer_facts(keras_model)
    fixed = (int(size[0]), int(size[1])) if None not in size else None
    if stored is not None:
        if stored.input_channels != channels or stored.num_classes != max(2, out_channels):
            raise ValueError(
                f"{source}: its metadata says {stored.input_channels} channels / "
                f"{stored.num_classes} classes but the network has {channels} / "
                f"{out_channels}; the file is inconsistent, re-save it"
            )
        depth = stored.depth
    probe = fixed or (smallest_valid_input_size(depth) + 2**depth,) * 2
    _check_geometry(keras_model, probe, depth, source)
    if stored is not None:
        return stored
    return ModelMetadata(
        input_channels=channels,
        num_classes=max(2, out_channels),
        depth=depth,
        base_filters=base,
        fixed_input_size=fixed,
        name=Path(source).stem or "unet",
    )


def fully_convolutional_twin(unet: UNetModel, *, atol: float = 1e-4) -> Any | None:
    """Move a fixed-size U-Net's weights into a fully convolutional twin, if they fit.

    The twin is accepted only if it reproduces the original's output on a random input of
    the original size, so layer orders that merely have the same weight shapes (e.g. the
    concatenation the other way round) are not mistaken for the paper's architecture.
    """
    from napari_tiled_unet.core.model.builder import build_unet

    meta = unet.metadata
    twin = build_unet(
        input_channels=meta.input_channels,
        num_classes=meta.num_classes,
        depth=meta.depth,
        base_filters=meta.base_filters,
    )
    weights = unet.keras_model.get_weights()
    if [w.shape for w in weights] != [tuple(v.shape) for v in twin.weights]:
        return None
    twin.set_weights(weights)
    rng = np.random.default_rng(0)
    probe = rng.random((1, *meta.fixed_input_size, meta.input_channels), dtype=np.float32)  # type: ignore[misc]
    original = np.asarray(unet.keras_model(probe, training=False))
    if original.shape[-1] != meta.num_classes:
        return None
    moved = np.asarray(twin(probe, training=False))
    return twin if np.allclose(original, moved, atol=atol) else None
