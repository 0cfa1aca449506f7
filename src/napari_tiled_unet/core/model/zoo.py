"""Models from the BioImage Model Zoo: read a bioimage.io package (zip, folder or yaml).

A package exported by this plugin carries its ``.keras`` file with our metadata, so it loads
exactly as that file would.  Any other 2D Keras model runs through the same overlap-tile
engine: a valid-convolution U-Net as it is, a padded ("same") one with its output cropped by
a halo, the larger of the description's ``halo`` and the network's receptive field, rounded
up to the network's pooling grid (so that tiles stitch seamlessly); its preprocessing
becomes the normaliser (``scale_range``, ``zero_mean_unit_variance``) plus fixed per-pixel
steps in front of the network (``scale_linear``, ``fixed_zero_mean_unit_variance``,
``clip``).  What cannot run here (3D,
weights for another framework, other processing) is refused in one line that says why.

``bioimageio.spec`` (the ``bioimageio`` extra) is imported only to read a package; nothing
is ever downloaded.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from napari_tiled_unet.core.model.types import UNetModel

__all__ = [
    "DESCRIPTION_NAMES",
    "SPEC_HINT",
    "import_spec",
    "is_bioimageio_source",
    "load_bioimageio_model",
    "quiet_spec",
]

SPEC_HINT = (
    "bioimage.io packages need the bioimageio extra: pip install 'napari-tiled-unet[bioimageio]'"
)
#: File names of a package's description.
DESCRIPTION_NAMES = ("bioimageio.yaml", "rdf.yaml")
_RUNNABLE = ("keras_v3", "keras_hdf5")


def import_spec() -> ModuleType:
    """Import ``bioimageio.spec`` quietly, or raise an ImportError that says how to get it."""
    os.environ.setdefault("BIOIMAGEIO_LOG_WARNINGS", "false")
    try:
        import bioimageio.spec as spec
    except ImportError as exc:
        raise ImportError(SPEC_HINT) from exc
    return spec


@contextlib.contextmanager
def quiet_spec() -> Iterator[None]:
    """Hide a note ``bioimageio.spec`` emits on every package it reads or writes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="dumping with mode='python'")
        yield


def _is_description(name: str) -> bool:
    return name in DESCRIPTION_NAMES or name.endswith(".bioimageio.yaml")


def is_bioimageio_source(path: str | os.PathLike[str]) -> bool:
    """Return True for a bioimage.io package: a zip or folder with a description, or the yaml.

    Reads only file names (standard library), so model lists can call it.
    """
    path = Path(path)
    if path.is_dir():
        return any(_is_description(p.name) for p in path.iterdir())
    if path.suffix.lower() in (".yaml", ".yml"):
        return _is_description(path.name)
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(_is_description(name) for name in archive.namelist())
    return False


def _description(path: Path, spec: ModuleType) -> Any:
    """Load the model description (latest format), or raise a one-line ValueError."""
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist; check the path")
    if path.is_dir():  # bioimageio.spec opens the description inside a folder by its name
        path = next(p for p in sorted(path.iterdir()) if _is_description(p.name))
    with quiet_spec():
        descr = spec.load_description(path, perform_io_checks=False, format_version="latest")
    if isinstance(descr, spec.InvalidDescr):
        errors = [e for d in descr.validation_summary.details for e in d.errors]
        why = f"{'.'.join(map(str, errors[0].loc))}: {errors[0].msg}" if errors else "invalid"
        raise ValueError(f"{path.name} is not a valid bioimage.io description ({why[:200]})")
    if descr.type != "model":
        raise ValueError(f"{path.name} describes a {descr.type}, not a model; choose a model")
    return descr


def _check_tensors(descr: Any) -> None:
    """Refuse what the 2D engine cannot run: several tensors, 3D, other axes orders."""
    name = descr.name
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ValueError(
            f"{name} has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; "
            "napari-tiled-unet runs models with one image in and one out"
        )
    for tensor in (descr.inputs[0], descr.outputs[0]):
        kinds = [a.type for a in tensor.axes]
        ids = [str(a.id) for a in tensor.axes if a.type == "space"]
        if "z" in ids or kinds.count("space") == 3:
            raise ValueError(f"{name} is a 3D model; napari-tiled-unet runs 2D models")
        if [k for k in kinds if k != "batch"] != ["space", "space", "channel"] or ids != [
            "y",
            "x",
        ]:
            axes = "".join(str(a.id)[0] for a in tensor.axes)
            raise ValueError(
                f"{name}: tensor {tensor.id} has axes {axes!r}; napari-tiled-unet runs 2D "
                "Keras models with channels last (batch, y, x, channel)"
            )


def _weights_file(descr: Any, folder: Path) -> Path:
    """Write the Keras weights (keras_v3, else keras_hdf5) of the package into ``folder``."""
    formats = (
        *("keras_v3", "keras_hdf5", "tensorflow_saved_model_bundle", "onnx"),
        *("pytorch_state_dict", "torchscript", "tensorflow_js"),
    )
    present = [f for f in formats if getattr(descr.weights, f, None) is not None]
    chosen = next((f for f in _RUNNABLE if f in present), None)
    if chosen is None:
        raise ValueError(
            f"{descr.name} has only {', '.join(present)} weights; napari-tiled-unet runs "
            "Keras weights (keras_v3 or keras_hdf5)"
        )
    entry = getattr(descr.weights, chosen)
    if str(entry.source).startswith(("http://", "https://")):
        raise ValueError(
            f"{descr.name}: its weights are not in the package but at {entry.source}; "
            "download the whole package (zip) and open that"
        )
    target = folder / ("model.keras" if chosen == "keras_v3" else "model.h5")
    target.write_bytes(entry.get_reader().read())
    return target


def load_bioimageio_model(path: str | os.PathLike[str]) -> UNetModel:
    """Load a 2D Keras model from a bioimage.io package for :func:`napari_tiled_unet.segment`.

    Parameters
    ----------
    path : path-like
        The package (``.zip``), its folder, or its ``bioimageio.yaml`` / ``rdf.yaml``.

    Returns
    -------
    UNetModel
        Our own exports exactly as their ``.keras`` file; other models with metadata from
        the description (class names, normalisation, halo).

    Raises
    ------
    ImportError
        Without ``bioimageio.spec``.
    FileNotFoundError, ValueError
        With one line saying why the package cannot be run.
    """
    from napari_tiled_unet.core.model.inspect import keras_load, metadata_of, read_metadata

    spec = import_spec()
    path = Path(path)
    descr = _description(path, spec)
    _check_tensors(descr)
    with tempfile.TemporaryDirectory(prefix="napari-tiled-unet-zoo-") as tmp:
        weights = _weights_file(descr, Path(tmp))
        keras_model = keras_load(weights)
        stored = read_metadata(weights)
    if stored is not None:  # exported by napari-tiled-unet: the file says everything
        meta = metadata_of(keras_model, stored, source=path.name)
        return UNetModel(keras_model, meta, source=str(path))
    from napari_tiled_unet.core.model.zoo_import import foreign_model

    keras_model, meta = foreign_model(keras_model, descr)
    return UNetModel(keras_model, meta, source=str(path))
