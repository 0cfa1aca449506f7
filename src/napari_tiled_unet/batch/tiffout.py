"""Streaming, atomic, reproducible TIFF outputs (ring 2).

tifffile writes the header and the image file directories of an uncompressed, contiguous
image first; the pixel data are then written plane by plane (or band by band) at their
offsets, so nothing larger than a plane is ever held.  The file lives under a hidden
temporary name until it is complete and is then renamed in one step: a reader sees either no
file or the whole file.  No time stamp or random identifier is written, so the same data
give the same bytes.

Formats:

- ``"imagej"``: ImageJ hyperstack (axes a subset of TZ, then YX), with resolution, unit,
  Z spacing and frame interval, for outputs below 4 GB.  float32 probabilities
  (``...YXC``) are written so too, classes as ImageJ's channels (TZCYX order: each class
  of a plane is a page), with the calibration of the labels; ImageJ reads 32-bit floats
  but not 16-bit ones, so float16 probabilities stay shaped;
- ``"ome"``: OME-TIFF in BigTIFF for labels of 4 GB and more (Fiji opens it with
  Bio-Formats), with physical sizes;
- ``"shaped"``: tifffile's shaped TIFF (axes in JSON; BigTIFF when needed) for everything
  else, e.g. probabilities with classes as the last axis.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.batch.files import Calibration

__all__ = [
    "BIGTIFF_THRESHOLD",
    "TiffOutput",
    "choose_format",
    "remove_stale_files",
    "remove_stale_partials",
]

#: Outputs at least this large (bytes of pixel data) are written as BigTIFF.
BIGTIFF_THRESHOLD = 2**32 - 2**25
_PARTIAL = ".partial"


def choose_format(
    axes: str, nbytes: int, *, threshold: int | None = None, dtype: Any = np.float32
) -> str:
    """Pick ``"imagej"``, ``"ome"`` or ``"shaped"`` for an output (see the module docs).

    ``axes`` ending in ``C`` are probabilities, classes last; ``dtype`` is their type.
    """
    classes = axes.endswith("C")
    spatial = axes[:-1] if classes else axes
    leading = spatial[:-2]
    hyperstack = spatial.endswith("YX") and "".join(a for a in "TZ" if a in leading) == leading
    small = nbytes < (threshold or BIGTIFF_THRESHOLD)
    if not hyperstack:
        return "shaped"
    if classes:
        return "imagej" if small and np.dtype(dtype) == np.float32 else "shaped"
    return "imagej" if small else "ome"


def _partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}{_PARTIAL}")


def remove_stale_partials(path: Path) -> None:
    """Delete temporary files of ``path`` left by killed runs of this host."""
    host = socket.gethostname()
    for partial in path.parent.glob(f".{path.name}.*{_PARTIAL}"):
        owner = partial.name[len(path.name) + 2 : -len(_PARTIAL)]
        name, _, pid = owner.rpartition("-")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _owner(name: str) -> tuple[str, str] | None:
    """``(host, pid)`` from the name of a hidden partial output, None for other files."""
    if not (name.startswith(".") and name.endswith(_PARTIAL)):
        return None
    for ending in ("_labels.tif.", "_probabilities.tif."):
        at = name.rfind(ending)
        if at > 0:
            host, _, pid = name[at + len(ending) : -len(_PARTIAL)].rpartition("-")
            return (host, pid) if pid.isdigit() else None
    return None


def remove_stale_files(folder: Path, *, locked: bool = False) -> list[Path]:
    """Delete the hidden partial outputs (and record drafts) of dead runs in ``folder``.

    Partial outputs of processes of this host that are no longer running are removed; when
    the caller holds the folder's lock (``locked``: no other run is writing into it), those
    made on other hosts and left-over drafts of the run record too.  Returns what was removed.
    """
    host, removed = socket.gethostname(), []
    for path in sorted(Path(folder).glob(".*")):
        owner = _owner(path.name)
        if owner is not None:
            stale = not _alive(int(owner[1])) if owner[0] == host else locked
        else:
            stale = locked and path.name.startswith(".napari-tiled-unet-run.json.")
            stale = stale and path.name.endswith(".tmp")
        if stale:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # query limited information
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _metadata(fmt: str, axes: str, calibration: Calibration, name: str) -> dict[str, Any]:
    info: dict[str, Any] = {"axes": axes}
    cal = calibration
    if fmt == "ome":
        size = cal.pixel_size
        if size is not None:
            unit = "µm" if cal.unit == "um" else cal.unit
            info.update(PhysicalSizeY=size[0], PhysicalSizeX=size[1])
            info.update(PhysicalSizeYUnit=unit, PhysicalSizeXUnit=unit)
            if cal.spacing and "Z" in axes:
                info.update(PhysicalSizeZ=cal.spacing, PhysicalSizeZUnit=unit)
        if cal.interval and "T" in axes:
            info["TimeIncrement"] = cal.interval
        # A fixed identifier (tifffile would draw a random one): same data, same bytes.
        info["UUID"] = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'napari-tiled-unet/' + name)}"
        return info
    if cal.unit:
        info["unit"] = cal.unit
    if cal.spacing and "Z" in axes:
        info["spacing"] = cal.spacing
    if cal.interval and "T" in axes:
        info["finterval"] = cal.interval
    return info


class TiffOutput:
    """One output TIFF, written under a temporary name and renamed when complete.

    Use as a context manager: leaving the block without :meth:`commit` (an error, a
    cancellation) deletes the temporary file.

    Parameters
    ----------
    path : Path
        Final name.
    shape : tuple of int
        Full shape; the last two axes (three with classes last) form a page.
    dtype : numpy.dtype
        Pixel type.
    axes : str
        One letter per axis, e.g. ``"TZYX"`` or ``"ZYXC"``.
    calibration : Calibration
        Pixel size and friends to store.
    threshold : int, optional
        Pixel-data size from which BigTIFF is written (default :data:`BIGTIFF_THRESHOLD`).
    """

    def __init__(
        self,
        path: Path,
        *,
        shape: tuple[int, ...],
        dtype: Any,
        axes: str,
        calibration: Calibration,
        threshold: int | None = None,
    ) -> None:
        self.path, self.shape, self.axes = Path(path), tuple(shape), axes
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        threshold = threshold or BIGTIFF_THRESHOLD
        self.format = choose_format(axes, self.nbytes, threshold=threshold, dtype=self.dtype)
        self.bigtiff = self.nbytes >= threshold
        self._calibration = calibration
        self._page_dims = 3 if axes.endswith("C") else 2
        #: Classes as ImageJ channels: every class of a plane is a page of its own.
        self._channels = self.shape[-1] if self._page_dims == 3 and self.format == "imagej" else 0
        self._partial = _partial_name(self.path)
        self._handle: Any = None
        self._offset = 0
        self._written = 0

    def __enter__(self) -> TiffOutput:
        import tifffile

        remove_stale_partials(self.path)
        cal = self._calibration
        shape, axes = self.shape, self.axes
        if self._channels:  # ...YXC -> ...CYX, ImageJ's order
            shape, axes = (*shape[:-3], shape[-1], *shape[-3:-1]), axes[:-3] + "CYX"
        options: dict[str, Any] = {
            "shape": shape,
            "dtype": self.dtype,
            "photometric": "minisblack",
            "returnoffset": True,
            "metadata": _metadata(self.format, axes, cal, self.path.name),
        }
        if self._page_dims == 3 and not self._channels:
            options["planarconfig"] = "contig"
        if cal.resolution is not None:
            options["resolution"] = cal.resolution
            if self.format != "imagej":
                options["resolutionunit"] = {"inch": 2, "cm": 3, "mm": 4, "um": 5}.get(
                    cal.unit or "", 1
                )
        with tifffile.TiffWriter(
            self._partial,
            bigtiff=self.bigtiff,
            imagej=self.format == "imagej",
            ome=self.format == "ome",
        ) as writer:
            place = writer.write(None, **options)
        assert place is not None, "tifffile did not write a contiguous image"
        self._offset = int(place[0])
        self._handle = open(self._partial, "r+b")  # closed in commit() or __exit__
        return self

    @property
    def page_bytes(self) -> int:
        """Bytes of one page (plane)."""
        return int(np.prod(self.shape[-self._page_dims :])) * self.dtype.itemsize

    def write(self, page: int, data: np.ndarray, row: int = 0) -> None:
        """Write rows ``row, row + 1, ...`` of page number ``page`` (pages in file order).

        A page is a plane of the output (``(Y, X)``, or ``(Y, X, classes)`` for
        probabilities), whatever the file's layout.
        """
        data = np.asarray(data, dtype=self.dtype)
        if data.shape[1:] != self.shape[-self._page_dims + 1 :]:
            raise ValueError(f"rows of shape {data.shape[1:]} do not fit pages of {self.shape}")
        if not self._channels:
            self._put(page * self.page_bytes, row, np.ascontiguousarray(data))
            return
        plane_bytes = self.page_bytes // self._channels
        for channel in range(self._channels):
            start = (page * self._channels + channel) * plane_bytes
            self._put(start, row, np.ascontiguousarray(data[..., channel]))

    def _put(self, start: int, row: int, rows: np.ndarray) -> None:
        """Write ``rows`` at row ``row`` of the page that starts ``start`` bytes in."""
        self._handle.seek(self._offset + start + row * rows[:1].nbytes)
        self._handle.write(rows.data)
        self._written += rows.nbytes

    def commit(self) -> Path:
        """Flush to disk and rename into place; return the final path."""
        if self._written != self.nbytes:
            raise RuntimeError(f"{self.path.name}: {self._written} of {self.nbytes} bytes written")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._partial, self.path)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
        self._partial.unlink(missing_ok=True)
