"""The batch engine on Dask distributed: planes and chunks of huge planes as tasks (ring 2).

Each input becomes a lazy graph (:func:`napari_tiled_unet.batch.lazy.segment_lazy`) over a
picklable TIFF reader; bands of output rows are computed on the cluster a few at a time and
written here in file order, so outputs stay streaming, atomic and byte-identical to a local
run.  Workers load the model once per process (:class:`~napari_tiled_unet.batch.modelref.ModelRef`)
and read inputs themselves, so inputs and the model file must be on a file system the
workers share; outputs are written by this process only.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.batch.files import TiffSource
from napari_tiled_unet.batch.plan import FileJob, Rows, Tick

__all__ = ["TiffArray", "connect", "dask_pages"]

_OPEN: OrderedDict[tuple[str, int, int], TiffSource] = OrderedDict()
_OPEN_LOCK = threading.Lock()


def _source(path: str) -> TiffSource:
    """Return an open :class:`TiffSource` for ``path``, kept open per process (a few)."""
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = TiffSource(Path(path))
            while len(_OPEN) > 4:
                _OPEN.popitem(last=False)[1].close()
        _OPEN.move_to_end(key)
        return _OPEN[key]


class TiffArray:
    """A picklable array-like over a TIFF's first series for ``dask.array.from_array``.

    Parameters
    ----------
    path : path-like
        The file (readable by every worker).
    shape : tuple of int
        Shape of the series.
    dtype : numpy.dtype
        Its dtype.
    """

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, ...], dtype: Any) -> None:
        self.path = str(Path(path).resolve())
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[Any, ...]) -> np.ndarray:
        return _source(self.path).read(key)


@contextmanager
def connect(workers: int, scheduler: str | None) -> Iterator[Any]:
    """Yield a Dask client: to ``scheduler`` if given, else to a new local cluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as exc:
            raise ValueError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); check the address"
            ) from exc
        with client:
            yield client
        return
    # One thread per worker process: TensorFlow already uses every core of its machine.
    # The workers are started with Ctrl-C ignored (they inherit that), so that Ctrl-C in
    # the terminal reaches only this process, which then stops after the current plane.
    with _sigint_ignored():
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    with cluster, Client(cluster) as client:
        yield client


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _file_array(job: FileJob, chunk: int | None) -> Any:
    import dask.array as da
    from dask.base import tokenize

    source = job.source
    stat = source.path.stat()
    reader = TiffArray(source.path, source.shape, source.dtype)
    chunks = tuple(
        1 if a in job.layout.plane_axes else (chunk or n) if a in "YX" else n
        for a, n in zip(job.axes, source.shape)
    )
    return da.from_array(
        reader,
        chunks=chunks,
        name="tiff-" + tokenize(reader.path, stat.st_mtime_ns, stat.st_size),
        lock=False,
        meta=np.empty((0,) * len(source.shape), source.dtype),
    )


def dask_pages(
    client: Any, model: Any, unet: Any, options: Any
) -> Callable[[FileJob], Iterator[Tick | Rows]]:
    """Return a page producer for the batch engine that runs on ``client``'s cluster."""
    from napari_tiled_unet.batch.modelref import ModelRef, remember

    if not isinstance(model, (str, os.PathLike)):
        source = getattr(unet, "source", None)
        if source is None:
            raise ValueError("Dask workers load the model from its file; pass the model's path")
        model = source
    ref = ModelRef.from_path(model)
    remember(ref, unet)
    window = max(2, 2 * sum(client.nthreads().values()))

    def pages(job: FileJob) -> Iterator[Tick | Rows]:
        return _pages(client, ref, job, options, window)

    return pages


def _pages(
    client: Any, ref: Any, job: FileJob, options: Any, window: int
) -> Iterator[Tick | Rows]:
    from napari_tiled_unet.batch.lazy import segment_lazy

    side = int(np.sqrt(options.max_plane_bytes / 32)) if job.streamed else None
    size = job.rescale.object_size if job.rescale.active else "none"
    result = segment_lazy(
        ref, _file_array(job, side), options.replace(axes=job.axes, object_size=size), chunks=side
    )
    order = [result.axes.index(a) for a in job.label_axes]
    labels = result.labels.transpose(order)
    probs = result.probabilities.transpose([*order, len(order)]).astype(options.probability_dtype)
    n_planes = len(job.label_shape) - 2
    bands = np.cumsum((0, *labels.chunks[n_planes]))
    work = (
        (page, index, int(y0), int(y1))
        for page, index in enumerate(np.ndindex(*job.label_shape[:n_planes]))
        for y0, y1 in zip(bands, bands[1:])
    )
    pending: deque[tuple[int, int, list[Any]]] = deque()
    try:
        for page, index, y0, y1 in work:
            wanted = [labels[index][y0:y1]]
            if options.probabilities:
                wanted.append(probs[index][y0:y1])
            pending.append((page, y0, client.compute(wanted)))
            while len(pending) >= window:
                yield from _collect(client, pending.popleft(), bands)
        while pending:
            yield from _collect(client, pending.popleft(), bands)
    finally:
        for _, _, futures in pending:
            client.cancel(futures)


def _collect(client: Any, item: tuple[int, int, list[Any]], bands: np.ndarray) -> Iterator[Any]:
    page, y0, futures = item
    values = client.gather(futures)
    yield Rows(page, y0, values[0], values[1] if len(values) > 1 else None)
    done = int(np.searchsorted(bands, y0)) + 1
    yield Tick(page, done, len(bands) - 1)
