"""Reading and writing TIFF images for the command line (straight path, ring 2)."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["output_stem", "read_tiff", "segment_files", "write_tiff_atomic"]


def read_tiff(path: Path) -> tuple[np.ndarray, str]:
    """Read a TIFF's first series; return the array and its axes (tifffile's letters)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return series.asarray(), series.axes.upper()
    except (tifffile.TiffFileError, ValueError, IndexError) as exc:
        raise ValueError(
            f"{path.name} is not a readable TIFF ({exc}); check the file or convert it to TIFF"
        ) from exc


def _guess_axes(tiff_axes: str, ndim: int) -> str:
    """Translate tifffile's axes to ours: S (samples) -> C, Q/I (unknown) -> Z."""
    axes = tiff_axes.replace("S", "C")
    for letter in "QIO":
        if letter in axes:
            spare = next(a for a in "ZTPQ" if a not in axes)
            axes = axes.replace(letter, spare, 1)
    return axes if len(axes) == ndim else ""


def output_stem(path: Path) -> str:
    """Name stem of an input file without its TIFF suffix (``a.ome.tif`` -> ``a``)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def write_tiff_atomic(path: Path, data: np.ndarray, *, axes: str) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed when complete."""
    import tifffile

    fd, tmp_name = tempfile.mkstemp(suffix=".tif", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    try:
        tifffile.imwrite(
            tmp_name,
            data,
            metadata={"axes": axes},
            bigtiff=data.nbytes > 2**32 - 2**25,
            compression="zlib",
        )
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def segment_files(
    inputs: Sequence[Path],
    outdir: Path,
    *,
    model: Any,
    axes: str | None = None,
    tile_size: int | None = None,
    normalize: str = "auto",
    probabilities: bool = False,
) -> list[Path]:
    """Segment TIFF files; write ``<stem>_labels.tif`` (and probabilities) into ``outdir``.

    Returns the written paths.  Raises ValueError (one line) on unusable input.
    """
    from napari_tiled_unet.model.files import load_model
    from napari_tiled_unet.predict import segment

    unet = load_model(model)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in inputs:
        image, tiff_axes = read_tiff(path)
        use_axes = (axes or _guess_axes(tiff_axes, image.ndim)).upper() or None
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            result = segment(
                unet,
                image,
                axes=use_axes,
                tile_size=tile_size,
                normalize=None if normalize == "none" else normalize,
            )
        stem = output_stem(path)
        targets = [(outdir / f"{stem}_labels.tif", result.labels, result.axes)]
        if probabilities:
            targets.append(
                (outdir / f"{stem}_probabilities.tif", result.probabilities, result.axes + "C")
            )
        for target, data, data_axes in targets:
            write_tiff_atomic(target, data, axes=data_axes)
            written.append(target)
    return written
