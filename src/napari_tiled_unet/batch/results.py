"""Read a finished batch output and its input for the viewer (no Qt, no layers).

:func:`read_probabilities` reads ``<stem>_probabilities.tif`` with the classes last, as the
Python API and napari have them, whichever layout the file has (an ImageJ hyperstack with
classes as channels, or classes last).

:func:`read_result` runs in a worker thread and returns arrays with the layer keywords that
place them (axes, pixel size, channels); the Batch widget adds the layers on the main
thread.  Uncompressed files (every output, most inputs) are memory-mapped copy-on-write, so
opening a long stack is quick and painting the labels never changes the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OpenedResult", "read_probabilities", "read_result"]

# Units napari (pint) understands as written by our TIFF reader.
_UNITS = {"um": "um", "nm": "nm", "mm": "mm", "cm": "cm", "m": "m", "inch": "inch"}


@dataclass(frozen=True)
class OpenedResult:
    """A labels file and its input, ready for ``viewer.add_labels`` / ``add_image``.

    Attributes
    ----------
    name : str
        Stem of the input (the image layer's name).
    labels : numpy.ndarray
        The labels, axes as written (plane axes, then YX).
    labels_kwargs : dict
        ``scale``, ``axis_labels`` and, when known, ``units`` of the labels.
    image : numpy.ndarray
        The input, its plane axes in the order of the labels when they match.
    image_kwargs : dict
        The same for the image, with ``channel_axis`` or ``rgb`` for colour inputs.
    """

    name: str
    labels: np.ndarray
    labels_kwargs: dict[str, Any]
    image: np.ndarray
    image_kwargs: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> tuple[np.ndarray, str, Any]:
    """Array (memory-mapped when possible), our axes letters and calibration of a TIFF."""
    import tifffile

    from napari_tiled_unet.batch.files import TiffSource

    with TiffSource(path) as source:
        axes, calibration, shape = source.axes, source.calibration, source.shape
    data: Any
    try:
        data = tifffile.memmap(path, mode="c")
    except ValueError:  # compressed or scattered: read it
        data = tifffile.imread(path)
    return np.asarray(data).reshape(shape), axes, calibration


def _spatial(axes: str, calibration: Any) -> dict[str, Any]:
    """``scale``, ``axis_labels`` (and ``units``) for ``axes`` from a TIFF's calibration."""
    size = calibration.pixel_size
    unit = _UNITS.get(calibration.unit or "") if size else None
    scale = {
        "Y": size[0] if size else 1.0,
        "X": size[1] if size else 1.0,
        "Z": calibration.spacing or 1.0,
        "T": calibration.interval or 1.0,
    }
    units = {"Y": unit, "X": unit, "Z": unit if calibration.spacing else None}
    units["T"] = "s" if calibration.interval else None
    kwargs: dict[str, Any] = {
        "scale": [float(scale.get(a, 1.0)) for a in axes],
        "axis_labels": [a.lower() for a in axes],
    }
    if unit:
        kwargs["units"] = [units.get(a) or "pixel" for a in axes]
    return kwargs


def _arrange(image: np.ndarray, axes: str, order: str) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Put ``image``'s axes in ``order`` (channels first, or last for RGB)."""
    rgb = axes.endswith("C") and image.shape[-1] in (3, 4) and image.dtype == np.uint8
    channels = "C" if "C" in axes else ""
    target = order + channels if rgb else channels + order
    image = np.transpose(image, [axes.index(a) for a in target])
    extra: dict[str, Any] = {"rgb": True} if rgb else {}
    if channels and not rgb:
        extra["channel_axis"] = 0
    return image, order, extra


def read_result(labels_path: Path, input_path: Path, axes: str = "") -> OpenedResult:
    """Read a labels output and its input, arranged to overlay in the viewer.

    Parameters
    ----------
    labels_path : pathlib.Path
        ``<stem>_labels.tif``.
    input_path : pathlib.Path
        The image it was made from.
    axes : str, optional
        Axes of the input as segmented (default: from the file).

    Returns
    -------
    OpenedResult
        The image keeps its own axes order (and no pixel size) when its axes are unknown
        or do not match the labels.

    Raises
    ------
    ValueError
        With one line, when a file cannot be read.
    """
    from napari_tiled_unet.batch.files import output_stem

    labels, label_axes, calibration = _read(labels_path)
    label_axes = label_axes if len(label_axes) == labels.ndim else "".join("ZYX"[-labels.ndim :])
    image, file_axes, _ = _read(input_path)
    image_axes = (axes or file_axes).upper()
    image_kwargs: dict[str, Any] = {}
    if len(image_axes) == image.ndim and sorted(image_axes.replace("C", "")) == sorted(label_axes):
        image, image_axes, extra = _arrange(image, image_axes, label_axes)
        image_kwargs = {**_spatial(image_axes, calibration), **extra}
    return OpenedResult(
        output_stem(Path(input_path)),
        labels,
        _spatial(label_axes, calibration),
        image,
        image_kwargs,
    )


def read_probabilities(path: str | Path) -> np.ndarray:
    """Read a probabilities output of the batch engine, classes on the last axis.

    Parameters
    ----------
    path : str or pathlib.Path
        ``<stem>_probabilities.tif``: an ImageJ hyperstack whose channels are the classes
        (float32 outputs under 4 GB), or a shaped TIFF with the classes last.

    Returns
    -------
    numpy.ndarray
        ``(planes..., Y, X, classes)``, the file's pixel type (float32 or float16).

    Raises
    ------
    ValueError
        With one line, when the file has no class axis.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes, data, imagej = series.axes.upper(), series.asarray(), tif.is_imagej
    if imagej and "C" in axes:  # TZCYX: classes are the channels
        return np.moveaxis(data, axes.index("C"), -1)
    if axes.endswith(("C", "S")):
        return data
    raise ValueError(
        f"{Path(path).name} has no class axis (axes {axes}); give a <stem>_probabilities.tif "
        "written by napari-tiled-unet segment --probabilities"
    )
