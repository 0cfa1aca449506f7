"""Labels from a finished run's probabilities, recomputed off the main thread.

A change of Threshold, Output, Min. size or Min. contrast asks :class:`Relabeller` for new
labels; the labels are computed in a worker thread (:func:`napari_tiled_unet.core.outputs.
labels_from_probabilities`, numpy and scipy only: napari's thread pool is fine here) and
written into the labels layer on the main thread.  While one computation runs, newer
requests replace each other and only the latest is computed next: dragging the threshold
slider never queues a backlog, and a result that a newer request made stale is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker

from napari_tiled_unet._widgets._layers import update_labels
from napari_tiled_unet.core import outputs

__all__ = ["Relabeller", "Request"]


@dataclass(frozen=True)
class Request:
    """New labels for the run cached in ``cache`` (see ``LiveRun``)."""

    cache: dict[str, Any]
    kind: str
    threshold: float
    min_size: int
    min_contrast: float = 0.0


def _compute(request: Request) -> Any:
    cache = request.cache
    pixels = cache.get("pixels")
    if pixels is not None and request.min_contrast:
        pixels = outputs.channels_last(pixels, cache.get("pixel_axes") or "")
    return outputs.labels_from_probabilities(
        cache["probabilities"],
        axes=cache["axes"],
        kind=request.kind,  # type: ignore[arg-type]
        threshold=request.threshold,
        min_size=request.min_size,
        image=pixels,
        min_contrast=request.min_contrast,
    )


class Relabeller:
    """Recompute a run's labels in a worker thread; the latest request wins.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Whose labels layer (``cache["layer"]``) is updated.
    failed : callable
        Called on the main thread with an exception the computation raised.
    """

    def __init__(self, viewer: Any, failed: Callable[[BaseException], None]) -> None:
        self._viewer, self._failed = viewer, failed
        self._pending: Request | None = None
        #: Bumped by :meth:`discard`: results of requests made before are dropped.
        self._generation = 0
        #: The worker of the computation in progress, or None.
        self.worker: Any = None

    def request(self, request: Request) -> None:
        """Ask for labels; returns at once, the layer changes when they are computed."""
        self._pending = request
        if self.worker is None:
            self._next()

    def discard(self) -> None:
        """Forget the requests made so far: a new run now owns the labels layer."""
        self._pending = None
        self._generation += 1

    def _next(self, _: Any = None) -> None:
        request, self._pending = self._pending, None
        self.worker = None
        if request is None:
            return
        generation = self._generation
        self.worker = create_worker(
            _compute,
            request,
            _connect={
                "returned": lambda labels: self._apply(request, labels, generation),
                "errored": self._failed,
                "finished": self._next,
            },
        )

    def _apply(self, request: Request, labels: Any, generation: int) -> None:
        """Show computed labels unless a newer request (or a new run) made them stale."""
        cache = request.cache
        stale = self._pending is not None or generation != self._generation
        if stale or cache["layer"] not in self._viewer.layers:
            return
        cache["layer"] = update_labels(self._viewer, cache["layer"], labels, cache["spatial"])
