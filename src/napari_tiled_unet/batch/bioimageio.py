"""Export a U-Net as a BioImage Model Zoo (bioimage.io) model package.

The package is one zip with a ``bioimageio.yaml`` description (format 0.5), the weights as
``keras_v3`` (the ``.keras`` file with our metadata), ``tensorflow_saved_model_bundle`` (for
deepImageJ) and, with the ``onnx`` extra installed, ``onnx``; test input and output tensors
computed by the model; a README (model card) and a cover picture.  The description tells any
bioimage.io consumer the valid-convolution geometry (input sizes ``min + n * step``, an output
smaller by the halo on every side) and the percentile normalisation.

Needs the ``bioimageio`` extra (``bioimageio.spec``), imported when an export starts; reading
packages is :func:`napari_tiled_unet.core.model.zoo.load_bioimageio_model`.  Writes files: this is
the batch / command-line ring.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_tiled_unet.batch._bioimageio_readme import PAPER, PAPER_DOI, readme_text
from napari_tiled_unet.core.model.zoo import import_spec, quiet_spec
from napari_tiled_unet.core.prepare import resolve_model

__all__ = [
    "DEFAULT_LICENSE",
    "default_authors",
    "default_tags",
    "export_bioimageio",
    "summary_line",
    "validate_bioimageio",
]

#: Licence of exported packages unless another SPDX identifier is given.
DEFAULT_LICENSE = "CC-BY-4.0"
_INPUT, _OUTPUT = "raw", "probabilities"
_EPS = 1e-6  # bioimage.io's scale_range needs a positive epsilon; ours adds none


def default_authors() -> list[str]:
    """Return the author of a package unless others are given: the user's login name."""
    try:
        return [getpass.getuser()]
    except (KeyError, OSError):  # no user name on this system
        return ["napari-tiled-unet user"]


def default_tags(meta: Any) -> list[str]:
    """Tags for the zoo's search: the architecture, the task, the dimensionality."""
    tags = ["unet", "segmentation", "2d", "napari-tiled-unet", "tensorflow", "keras"]
    if "border" in meta.class_names:
        tags.append("instance-segmentation")
    if any("nucle" in text.lower() for text in (meta.name, meta.description)):
        tags += ["nuclei", "fluorescence-light-microscopy"]
    return tags


def _package_name(meta: Any, name: str | None) -> str:
    """Return a name the zoo accepts: 5-128 letters, digits, spaces and ``_+-()``."""
    text = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name or meta.name).strip() or "unet"
    return (text if len(text) >= 5 else f"{text} U-Net")[:128]


def _test_input(meta: Any, size: tuple[int, int], image: np.ndarray | None) -> np.ndarray:
    """Return a raw ``(1, Y, X, C)`` float32 test input: an image, the sample, or noise."""
    if image is None and meta.input_channels == 1:
        from napari_tiled_unet.data import nuclei2d

        image = nuclei2d()[0]
    if image is None:
        rng = np.random.default_rng(0)
        image = rng.random((*size, meta.input_channels), dtype=np.float32) * 255
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] != meta.input_channels:
        raise ValueError(
            f"the test image has shape {image.shape}; give one (Y, X) plane, or (Y, X, C) "
            f"with the model's {meta.input_channels} channels"
        )
    pad = [(0, max(0, size[0] - image.shape[0])), (0, max(0, size[1] - image.shape[1])), (0, 0)]
    image = np.pad(image, pad, mode="reflect") if any(p[1] for p in pad) else image
    return np.ascontiguousarray(image[None, : size[0], : size[1]])


def _preprocess(x: np.ndarray, norm: dict[str, Any] | None) -> np.ndarray:
    """Apply the described preprocessing as a bioimage.io consumer computes it."""
    if not norm or norm.get("method") in (None, "none"):
        return x
    axes = (0, 1, 2) if norm.get("per") == "stack" else (1, 2)
    lo = np.percentile(x, norm["low"], axis=axes, keepdims=True)
    hi = np.percentile(x, norm["high"], axis=axes, keepdims=True)
    return ((x - lo) / (hi - lo + _EPS)).astype(np.float32)


def _preprocessing(norm: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not norm or norm.get("method") in (None, "none"):
        return []
    axes = ["batch", "y", "x"] if norm.get("per") == "stack" else ["y", "x"]
    kwargs = {"axes": axes, "min_percentile": norm["low"], "max_percentile": norm["high"]}
    return [{"id": "scale_range", "kwargs": {**kwargs, "eps": _EPS}}]


def _geometry(meta: Any) -> dict[str, int]:
    from napari_tiled_unet.core.model.geometry import alignment, halo, smallest_valid_input_size

    return {
        "min": smallest_valid_input_size(meta.depth),
        "step": alignment(meta.depth),
        "halo": halo(meta.depth),
    }


def _axes(meta: Any, geometry: dict[str, int]) -> tuple[list[Any], list[Any]]:
    fixed = meta.fixed_input_size
    sizes = fixed or [{"min": geometry["min"], "step": geometry["step"]}] * 2
    names = [f"channel{k}" for k in range(meta.input_channels)]
    inputs = [
        {"type": "batch"},
        {"type": "space", "id": "y", "size": sizes[0]},
        {"type": "space", "id": "x", "size": sizes[1]},
        {"type": "channel", "channel_names": names},
    ]
    shrink = -2 * geometry["halo"]
    outputs = [
        {"type": "batch"},
        *(
            {
                "type": "space",
                "id": axis,
                "size": {"tensor_id": _INPUT, "axis_id": axis, "offset": shrink},
            }
            for axis in ("y", "x")
        ),
        {"type": "channel", "channel_names": list(meta.class_names)},
    ]
    return inputs, outputs


def _onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("tf2onnx", "onnx"))


def _zip_folder(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())


def _saved_model(keras: Any, tf: Any, model: Any, folder: Path) -> None:
    """Write a SavedModel whose signatures map the input tensor's id to the output's.

    Consumers (bioimage.io's TensorFlow runner, deepImageJ) call the ``serve`` or
    ``serving_default`` signature and read its outputs by name.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    channels = model.inputs[0].shape[-1]
    archive.add_endpoint(
        name="serve",
        fn=lambda raw: {_OUTPUT: model(raw, training=False)},
        input_signature=[tf.TensorSpec((None, None, None, channels), tf.float32, name=_INPUT)],
    )
    archive.write_out(str(folder), verbose=False)


def _write_weights(unet: Any, folder: Path, onnx: bool) -> dict[str, Any]:
    """Write the weights files into ``folder``; return the description's ``weights``."""
    from napari_tiled_unet.core._keras import get_keras, get_tf
    from napari_tiled_unet.core.model.files import save_model, to_stock_keras

    keras, tf = get_keras(), get_tf()
    save_model(unet, folder / "model.keras")
    model = to_stock_keras(unet.keras_model)
    _saved_model(keras, tf, model, folder / "saved_model")
    _zip_folder(folder / "saved_model", folder / "tf_saved_model.zip")
    shutil.rmtree(folder / "saved_model")
    weights: dict[str, Any] = {
        "keras_v3": {
            "source": "model.keras",
            "keras_version": keras.__version__,
            "backend": ["tensorflow", tf.__version__],
        },
        "tensorflow_saved_model_bundle": {
            "source": "tf_saved_model.zip",
            "tensorflow_version": tf.__version__,
            "parent": "keras_v3",
            "comment": "signatures 'serve' and 'serving_default': {raw} -> {probabilities}",
        },
    }
    if onnx:
        from napari_tiled_unet.core.model.geometry import smallest_valid_input_size
        from napari_tiled_unet.core.onnx_export import export_onnx

        meta = unet.metadata
        size = meta.fixed_input_size or (smallest_valid_input_size(meta.depth),) * 2
        opset = export_onnx(model, folder / "model.onnx", input_size=tuple(size))
        weights["onnx"] = {"source": "model.onnx", "opset_version": opset, "parent": "keras_v3"}
    return weights


def _write_tensors(
    unet: Any, folder: Path, size: tuple[int, int], image: np.ndarray | None
) -> None:
    from napari_tiled_unet.batch.png import overlay, write_png
    from napari_tiled_unet.core.predict import class_labels

    meta = unet.metadata
    raw = _test_input(meta, size, image)
    output = unet.predict_batch(_preprocess(raw, meta.normalization))
    np.save(folder / "test_input.npy", raw)
    np.save(folder / "test_output.npy", output)
    sample = raw[0, ..., 0] if raw.shape[-1] == 1 else raw[0]
    tifffile.imwrite(folder / "sample_input.tif", sample, photometric="minisblack")
    tifffile.imwrite(folder / "sample_output.tif", output[0], photometric="minisblack")
    # Cover: the input's centre beside the output drawn over it (2:1, as the zoo asks).
    halo = (raw.shape[1] - output.shape[1]) // 2
    plane = raw[0, halo : halo + output.shape[1], halo : halo + output.shape[2], 0]
    labels = class_labels(output[0]).astype(np.int64)
    picture = overlay(plane, labels)
    write_png(folder / "cover.png", np.concatenate([overlay(plane, 0 * labels), picture], 1))


def _training_config(meta: Any, parameters: int) -> dict[str, Any]:
    config = (meta.training or {}).get("config", {})
    training = {
        key: value
        for key, value in (
            ("training_epochs", config.get("epochs")),
            ("training_batch_size", config.get("batch_size")),
            ("initial_learning_rate", config.get("learning_rate")),
            ("optimizer", config.get("optimizer")),
            ("loss_function", "weighted cross-entropy (Ronneberger et al. 2015)"),
        )
        if value is not None
    }
    return {
        "architecture_type": "U-Net (valid conv.)",
        "architecture_description": (
            f"U-Net of Ronneberger et al. (2015), valid convolutions, depth {meta.depth}, "
            f"{meta.base_filters} base filters, softmax output"
        ),
        "model_parameter_count": parameters,
        "training": training,
    }


def _description(
    unet: Any,
    weights: dict[str, Any],
    *,
    name: str,
    text: str,
    people: list[str],
    license: str,
    tags: list[str],
) -> dict[str, Any]:
    """Return the ``bioimageio.yaml`` content (format 0.5) of the files written."""
    meta = unet.metadata
    geometry = _geometry(meta)
    inputs, outputs = _axes(meta, geometry)
    return {
        "type": "model",
        "format_version": import_spec().ModelDescr.implemented_format_version,
        "name": name,
        "description": text[:1024],
        "authors": [{"name": person} for person in people],
        "cite": [{"text": PAPER, "doi": PAPER_DOI}],
        "license": license,
        "tags": tags,
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "inputs": [
            {
                "id": _INPUT,
                "description": "image, any intensity range (normalised by the preprocessing)",
                "axes": inputs,
                "data": {"type": "float32"},
                "test_tensor": {"source": "test_input.npy"},
                "sample_tensor": {"source": "sample_input.tif"},
                "preprocessing": _preprocessing(meta.normalization),
            }
        ],
        "outputs": [
            {
                "id": _OUTPUT,
                "description": "softmax probability of each class (sums to 1 over channels)",
                "axes": outputs,
                "data": {"type": "float32", "range": [0.0, 1.0]},
                "test_tensor": {"source": "test_output.npy"},
                "sample_tensor": {"source": "sample_output.tif"},
            }
        ],
        "weights": weights,
        "config": {
            "bioimageio": _training_config(meta, int(unet.keras_model.count_params())),
            "napari-tiled-unet": {"depth": meta.depth, **geometry},
        },
    }


def export_bioimageio(
    model: Any,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | None = None,
    license: str = DEFAULT_LICENSE,
    tags: list[str] | None = None,
    documentation: str | os.PathLike[str] | None = None,
    test_image: np.ndarray | None = None,
    onnx: bool | None = None,
) -> Path:
    """Write ``model`` as a bioimage.io model package (a ``.zip``), validated offline.

    Parameters
    ----------
    model : UNetModel, keras.Model or path-like
        A valid-convolution U-Net of this package (or its model file).
    path : path-like
        The package to write, ending in ``.zip``; written under a temporary name first.
    name, description : str, optional
        Default: the model's own (a name gets " U-Net" appended when shorter than 5).
    authors : list of str, optional
        Author names; default :func:`default_authors`.
    license : str
        SPDX licence identifier of the package (default ``CC-BY-4.0``).
    tags : list of str, optional
        Default :func:`default_tags`.
    documentation : path-like, optional
        A Markdown README to ship instead of the one written from the model's metadata.
    test_image : numpy.ndarray, optional
        ``(Y, X)`` or ``(Y, X, C)`` raw image for the test tensors; default: the bundled
        nuclei sample (one-channel models) or seeded noise.
    onnx : bool, optional
        Add ONNX weights (needs the ``onnx`` extra); None adds them when it is installed.

    Returns
    -------
    Path
        The written package.

    Raises
    ------
    ImportError
        Without ``bioimageio.spec`` (with the command that installs it).
    ValueError
        For a model that is not a valid-convolution U-Net, or a description the zoo's
        validator rejects (its first reason in one line).
    """
    spec = import_spec()
    target = Path(path)
    if target.suffix.lower() != ".zip":
        raise ValueError(f"bioimage.io packages end in .zip, got {target.name!r}; rename it")
    unet = resolve_model(model)
    meta = unet.metadata
    if meta.padded_halo is not None:
        raise ValueError(
            "only valid-convolution U-Nets of napari-tiled-unet are exported; this network "
            "has padded convolutions (it came from elsewhere: share its original package)"
        )
    if onnx and not _onnx_available():
        raise ImportError(
            "ONNX weights need the onnx extra: pip install 'napari-tiled-unet[onnx]'"
        )
    with_onnx = _onnx_available() if onnx is None else onnx
    from napari_tiled_unet.core.model.geometry import smallest_input_for_output

    size = meta.fixed_input_size or (smallest_input_for_output(192, meta.depth),) * 2
    package_name = _package_name(meta, name)
    with tempfile.TemporaryDirectory(prefix="napari-tiled-unet-export-") as tmp:
        folder = Path(tmp)
        weights = _write_weights(unet, folder, with_onnx)
        _write_tensors(unet, folder, size, test_image)
        readme = (
            Path(documentation).read_text(encoding="utf-8")
            if documentation is not None
            else readme_text(meta, name=package_name, geometry=_geometry(meta))
        )
        (folder / "README.md").write_text(readme, encoding="utf-8")
        text = description or meta.description or f"U-Net for {', '.join(meta.class_names)}"
        content = _description(
            unet,
            weights,
            name=package_name,
            text=text,
            people=authors or default_authors(),
            license=license,
            tags=tags or default_tags(meta),
        )
        # IO checks read only the files just written (there is no URL in the description).
        context = spec.ValidationContext(root=folder, perform_io_checks=True)
        descr = spec.build_description(content, context=context, format_version="latest")
        if isinstance(descr, spec.InvalidDescr):
            raise ValueError(f"the package would not be valid: {_first_error(descr)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        with context, quiet_spec():
            spec.save_bioimageio_package(descr, output_path=partial)
        os.replace(partial, target)
    return target


def _first_error(descr: Any) -> str:
    errors = [e for d in descr.validation_summary.details for e in d.errors]
    if not errors:
        return "unknown reason"
    first = errors[0]
    return f"{'.'.join(map(str, first.loc))}: {first.msg}"[:300]


def validate_bioimageio(path: str | os.PathLike[str]) -> Any:
    """Validate a package with ``bioimageio.spec`` offline (no downloads, no IO checks).

    Returns
    -------
    bioimageio.spec.ValidationSummary
        ``.status`` is ``"valid-format"`` or ``"passed"`` when it has no errors.
    """
    spec = import_spec()
    with quiet_spec():
        descr = spec.load_description(
            Path(path), perform_io_checks=False, format_version="discover"
        )
    return descr.validation_summary


def summary_line(path: str | os.PathLike[str]) -> str:
    """Validate ``path`` (see :func:`validate_bioimageio`) and say the result in one line."""
    spec = import_spec()
    summary = validate_bioimageio(path)
    errors = sum(len(d.errors) for d in summary.details)
    warns = sum(len(d.warnings) for d in summary.details)
    return (
        f"bioimageio.spec {spec.__version__} validation (offline): {summary.status}, "
        f"{errors} error{'s' * (errors != 1)}, {warns} warning{'s' * (warns != 1)}"
    )
