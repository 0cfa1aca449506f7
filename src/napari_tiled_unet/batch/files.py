"""Reading TIFF inputs for batch runs: axes, calibration and planes read on demand (ring 2).

A :class:`TiffSource` opens the first series of a TIFF (ImageJ hyperstack, OME-TIFF, plain
multi-page or BigTIFF) and reads one plane, or one box of a plane, at a time: uncompressed
contiguous data through a short-lived memory map, anything else through tifffile's zarr
view of the file, so a stack is never loaded whole.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.batch.calibration import Calibration, read_calibration
from napari_tiled_unet.batch.record import recorded_outputs
from napari_tiled_unet.core.normalize import count_nonfinite, warn_nonfinite

__all__ = [
    "RUN_RECORD",
    "TIFF_SUFFIXES",
    "Calibration",
    "PlaneReader",
    "TiffSource",
    "axes_example",
    "expand_inputs",
    "nonfinite_note",
    "output_folder",
    "output_stem",
    "read_tiff",
]

#: Name of the run record written next to the outputs.
RUN_RECORD = "napari-tiled-unet-run.json"
#: File name endings of TIFF files.
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
_GLOB_CHARS = frozenset("*?[")


def _guess_axes(tiff_axes: str, ndim: int) -> str:
    """Translate tifffile's axes to ours: S (samples) -> C, Q/I/O (unknown) -> Z, T, ..."""
    axes = tiff_axes.replace("S", "C") if "C" not in tiff_axes else tiff_axes
    if sum(axes.count(letter) for letter in "QIO") > 1:
        return ""  # two or more unknown axes: which is Z, which T? Only the user knows
    for letter in "QIO":
        if letter in axes:
            spare = next(a for a in "ZTPQ" if a not in axes)
            axes = axes.replace(letter, spare, 1)
    return axes if len(axes) == ndim and len(set(axes)) == ndim else ""


def axes_example(ndim: int) -> str:
    """Return an axes string of ``ndim`` letters to suggest in messages ("TZYX" for 4)."""
    examples = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX", 6: "PTZCYX"}
    return examples.get(ndim, "ZYX")


class PlaneReader:
    """A lazy ``(Y, X, C)`` view of one plane: indexing with ``[ys, xs]`` reads that box only.

    Parameters
    ----------
    source : TiffSource
        The open file.
    key : tuple of int
        The plane's index along the source's plane axes (in the layout's plane-axes order).
    layout : AxesLayout
        The source's axes.
    """

    def __init__(self, source: TiffSource, key: tuple[int, ...], layout: Any) -> None:
        self._source, self._layout = source, layout
        self._fixed = dict(zip(layout.plane_axes, key))
        shape = dict(zip(layout.axes, source.shape))
        channel = layout.channel_axis
        channels = shape[layout.axes[channel]] if channel is not None else 1
        self.shape = (shape["Y"], shape["X"], channels)
        self.dtype = source.dtype
        self.ndim = 3

    def __getitem__(self, box: tuple[slice, slice]) -> np.ndarray:
        wanted = {"Y": box[0], "X": box[1]}
        key = tuple(self._fixed.get(a, wanted.get(a, slice(None))) for a in self._layout.axes)
        data = self._source.read(key)
        kept = [a for a in self._layout.axes if a not in self._fixed]  # Y, X and maybe C
        order = [kept.index("Y"), kept.index("X")]
        if self._layout.channel_axis is not None:
            order.append(kept.index(self._layout.axes[self._layout.channel_axis]))
        data = data.transpose(order)
        return data if self._layout.channel_axis is not None else data[..., np.newaxis]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[slice(None), slice(None)]
        return data if dtype is None else data.astype(dtype, copy=False)


class TiffSource:
    """The first series of a TIFF file, read on demand; use as a context manager.

    Attributes
    ----------
    path : Path
        The file.
    axes : str
        Our axes letters for the series ("" when tifffile's cannot be translated).
    shape : tuple of int
        Shape of the series.
    dtype : numpy.dtype
        Its dtype (native byte order).
    calibration : Calibration
        Pixel size and friends.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with _TiffErrors() as errors:
            self._open()
        if errors.messages:
            self.close()
            raise ValueError(f"the file is damaged ({errors.messages[0]})")

    def _open(self) -> None:
        import tifffile

        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as exc:  # tifffile raises many types for non-TIFF bytes
            reason = _reason(exc).removeprefix("not a TIFF file: ")
            raise ValueError(f"not a readable TIFF file ({reason})") from exc
        try:
            series = self._first_series()
            self.shape: tuple[int, ...] = tuple(int(n) for n in series.shape)
            dtype = np.dtype(series.dtype).newbyteorder("=")
            # Bilevel images are read as 0/1 bytes: percentiles and arithmetic need numbers.
            self.dtype = np.dtype(np.uint8) if dtype.kind == "b" else dtype
            if self.dtype.kind not in "uif":
                raise ValueError(
                    f"the file holds {self.dtype} pixels ({_kind(self.dtype)}), which cannot be "
                    "segmented; save the image as integers or floats"
                )
            self.axes = _guess_axes(series.axes.upper(), len(self.shape))
            self.calibration = read_calibration(self._tif)
            mappable = getattr(series.keyframe, "is_memmappable", False)
            self._offset = series.dataoffset if mappable else None
            self._stored = np.dtype(self._tif.byteorder + series.dtype.char)
            self._series = series
            self._zarr: Any = None
            self._check_size()
        except Exception:
            self._tif.close()
            raise

    def _first_series(self) -> Any:
        try:
            all_series = self._tif.series
        except Exception as exc:  # damaged directories surface as assorted errors
            raise ValueError(
                f"the file is damaged ({type(exc).__name__}: {_reason(exc)})"
            ) from exc
        if not all_series or not all_series[0].shape:
            raise ValueError("the TIFF holds no image")
        return all_series[0]

    def _check_size(self) -> None:
        if self._offset is None:
            return
        need = self._offset + int(np.prod(self.shape)) * self.dtype.itemsize
        have = self.path.stat().st_size
        if have < need:
            raise ValueError(f"the file is truncated ({have} of {need} bytes)")

    def read(self, key: tuple[Any, ...]) -> np.ndarray:
        """Read ``series[key]`` (ints and slices in the file's axis order) as a new array."""
        try:
            return self._read(key)
        except Exception as exc:  # decoders raise their own types on damaged data
            raise ValueError(
                f"cannot read the pixel data ({type(exc).__name__}: {_reason(exc)}); "
                "the file may be truncated or damaged"
            ) from exc

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        if self._offset is not None:
            # A memory map that lives only for this read: the pages it touches are released
            # with it, so reading a long stack does not grow the resident memory.
            mapped = np.memmap(self.path, self._stored, "r", self._offset, self.shape)
            try:
                return np.array(mapped[key], dtype=self.dtype)
            finally:
                mapped._mmap.close()  # type: ignore[attr-defined]
        if self._zarr is None:
            import zarr

            self._zarr = zarr.open_array(self._series.aszarr(), mode="r")
        return np.asarray(self._zarr[key], dtype=self.dtype)

    def count_nonfinite(self, block_bytes: int = 2**26) -> int:
        """Count the NaN and infinite values, reading blocks of about ``block_bytes``."""
        if self.dtype.kind != "f":
            return 0
        row = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        step = max(1, block_bytes // max(row, 1))
        return sum(
            count_nonfinite(self.read((slice(start, start + step),)))
            for start in range(0, self.shape[0], step)
        )

    def close(self) -> None:
        """Close the file."""
        self._tif.close()

    def __enter__(self) -> TiffSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kind(dtype: np.dtype) -> str:
    return {"c": "complex numbers", "V": "records"}.get(dtype.kind, "not real numbers")


class _TiffErrors(logging.Handler):
    """Collect tifffile's logged errors (it logs, not raises, when it falls back on damage)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            text = record.getMessage().split("> ", 1)[-1]
            self.messages.append(text.splitlines()[0][:200] if text else "tifffile error")

    def __enter__(self) -> _TiffErrors:
        logging.getLogger("tifffile").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("tifffile").removeHandler(self)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


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


def nonfinite_note(source: TiffSource, *, normalized: bool) -> str:
    """Check an input for NaN and infinite values: "" if none, else warn once and say so.

    Raises a one-line ValueError when no value is finite (nothing to segment).
    """
    bad = source.count_nonfinite()
    if not bad:
        return ""
    total = int(np.prod(source.shape))
    if bad == total:
        raise ValueError(
            f"no finite pixel value: all {total} are NaN or infinite; check the file "
            "(an empty or failed acquisition?)"
        )
    warn_nonfinite(bad, total, normalized=normalized, what=source.path.name)
    instead = "the low percentile" if normalized else "0"
    return f"{bad} NaN or infinite pixel values segmented as {instead}"


def output_folder(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as the output folder; a one-line ValueError if it is a file."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"the output folder {folder} is an existing file; give the path of a folder "
            "(it is created if missing)"
        )
    return folder


def output_stem(path: Path) -> str:
    """Name stem of an input file without its TIFF suffix (``a.ome.tif`` -> ``a``)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.btf", *TIFF_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _ours(path: Path, outdir: Path | None, made: set[str]) -> bool:
    """Tell whether ``path`` is one of our outputs (``made``) or run records in ``outdir``."""
    if outdir is None or path.parent.resolve() != outdir:
        return False
    record = Path(RUN_RECORD)
    kept_aside = path.name.startswith(f"{record.stem}.unreadable-") and path.suffix == ".json"
    return path.name == RUN_RECORD or kept_aside or path.name in made


def _glob(pattern: str) -> list[Path]:
    """Paths matching ``pattern``, where ``**`` visits every real folder once.

    The standard library's ``glob`` follows a symbolic link to a parent folder again and
    again (the same files under ever longer paths, exponentially many with two such links);
    here a folder reached a second time, through a link or otherwise, is not entered again.
    """
    parts = Path(pattern).parts
    if "**" not in parts:
        return sorted(Path(p) for p in glob.glob(pattern))
    at = parts.index("**")
    head = str(Path(*parts[:at])) if at else "."
    rest = str(Path(*parts[at + 1 :])) if at + 1 < len(parts) else "*"
    tops = sorted(Path(p) for p in glob.glob(head)) if _GLOB_CHARS & set(head) else [Path(head)]
    found: set[Path] = set()
    seen: set[tuple[int, int]] = set()
    for top in tops:
        for folder, subfolders, _ in os.walk(top, followlinks=True):
            stat = os.stat(folder)
            if (stat.st_dev, stat.st_ino) in seen:
                subfolders.clear()
                continue
            seen.add((stat.st_dev, stat.st_ino))
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            found.update(_glob(str(Path(folder) / rest)))
    return sorted(found)


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]], *, exclude: Path | None = None
) -> tuple[list[Path], list[str]]:
    """Resolve files, glob patterns and folders into a sorted, duplicate-free list of files.

    Folders contribute every file they hold (not recursive), so that a stray non-TIFF is
    reported rather than silently ignored; hidden files, and this program's outputs and run
    record when the folder is the output folder ``exclude``, are left out.  Use a pattern
    such as ``data/*.tif`` to pick files by name.

    Returns
    -------
    files : list of Path
        The files, in the order given (each folder or pattern sorted by name).
    problems : list of str
        One line per input that named nothing.
    """
    files: list[Path] = []
    problems: list[str] = []
    skip_dir = exclude.resolve() if exclude is not None else None
    made = recorded_outputs(skip_dir / RUN_RECORD) if skip_dir is not None else set()
    for item in inputs:
        text = os.fspath(item)
        if _GLOB_CHARS & set(text) and not Path(text).exists():
            found = _glob(text)
            matches = [
                p
                for p in found
                if p.is_file() and not p.name.startswith(".") and not _ours(p, skip_dir, made)
            ]
            if not matches:
                problems.append(f"{text}: no file matches this pattern")
            files.extend(matches)
        elif Path(text).is_dir():
            folder = sorted(p for p in Path(text).iterdir() if p.is_file())
            taken = [
                p for p in folder if not p.name.startswith(".") and not _ours(p, skip_dir, made)
            ]
            if not taken:
                problems.append(f"{text}: the folder holds no files to segment")
            files.extend(taken)
        elif Path(text).is_file():
            files.append(Path(text))
        else:
            problems.append(f"{text}: no such file or folder")
    # One file reached under two names (links) is segmented once, under the first name.
    seen: set[Path] = set()
    unique = []
    for path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique, problems
