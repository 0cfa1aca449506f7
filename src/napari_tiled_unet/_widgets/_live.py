"""One run of the Segment widget: worker thread, progress bar, growing labels, undo.

The worker (:func:`~napari_tiled_unet._widgets._workers.segment_steps`, in a Python thread of
its own: see :mod:`~napari_tiled_unet._widgets._workers`) only computes; every
layer change happens here, on the main thread, in the worker's signal handlers.  napari's
progress bars process Qt events when they change, so each handler finishes its own work
before it touches the bar: a handler may be re-entered from inside ``bar.update``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils import progress
from qtpy.QtCore import QTimer

from napari_tiled_unet._widgets._dock import make_worker
from napari_tiled_unet._widgets._layers import labels_name, next_step, show_labels
from napari_tiled_unet._widgets._workers import Job, ModelLoaded, in_python_thread, segment_steps
from napari_tiled_unet.core import outputs
from napari_tiled_unet.core.axes import parse_axes

__all__ = ["LiveRun", "RunCallbacks"]

#: Tiles of up to this many pixels are drawn through napari's painting path, which redraws
#: only the pixels that changed; larger ones are written at once and the view redrawn.
_PAINT_LIMIT = 2**16
#: Delay (ms) between the steps of a run's start: a frame at 60 Hz.  Qt runs due timers in
#: the order they fall due, so a step due a millisecond after the last one ran before the
#: viewer's own timers (animations, the activity indicator) that fell due meanwhile, and
#: two steps could add up into one pause; 0 would run in the same pass of the event loop.
_NEXT_TURN_MS = 16


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class RunCallbacks:
    """What a run tells the widget: a model was loaded, a status line, the result, the end."""

    model_loaded: Callable[[ModelLoaded], None]
    status: Callable[[str], None]
    returned: Callable[[dict[str, Any]], None]
    failed: Callable[[BaseException], None]
    ended: Callable[[], None]


class LiveRun:
    """Segment one image layer in a worker thread and show the labels as they are computed.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Where the labels layer appears (named after the image, reused if it exists).
    job : Job
        The model, the data and the options of :func:`napari_tiled_unet.iter_segment`.
    info : dict
        ``layer`` (the image layer), ``layout`` (its parsed axes), ``spatial`` (metadata
        for the outputs) and, optionally, ``window`` (the viewer's top-level Qt window).
    callbacks : RunCallbacks
        How the widget hears about the run.
    """

    def __init__(
        self,
        viewer: Any,
        job: Job,
        info: dict[str, Any],
        *,
        callbacks: RunCallbacks,
    ) -> None:
        self._viewer, self._job, self._info = viewer, job, info
        self._callbacks = callbacks
        self._done, self._start = 0, 0.0
        #: Seconds the model took to load (None: it was loaded already).
        self._load_seconds: float | None = None
        self._bar: Any = None
        self.snapshot: Any = None
        self.worker: Any = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Show an empty labels layer, then start a progress bar and the worker.

        Returns before the layer is in the viewer: a new labels layer, its first paint, the
        visuals of its drawing overlays and napari's first progress bar each keep the main
        thread busy for up to a tenth of a second, so each gets a turn of the event loop of
        its own (the viewer reacts in between).  The worker starts last: the layer is there
        before the first tile.
        """
        layer, layout = self._info["layer"], self._info["layout"]
        shape = self._job.image.shape
        out_shape = tuple(n for i, n in enumerate(shape) if i != layout.channel_axis)
        self.snapshot = show_labels(
            self._viewer,
            labels_name(layer.name),
            # uint16 holds class and instance labels alike, so that the type of the
            # layer's data stays the same when Output changes (see show_labels).
            np.zeros(out_shape, np.uint16),
            self._info["spatial"],
            insert=False,
        )
        self._view = outputs.canonical_view(self.snapshot.layer.data, layout.output_axes)
        # Data axis of each canonical axis (planes..., Y, X): where a tile lies in the layer.
        shape = self.snapshot.layer.data.shape
        self._data_axis = parse_axes(layout.output_axes, shape).canonical_order()
        self._start = time.perf_counter()
        steps = partial(segment_steps, self._job)
        self.worker = make_worker(in_python_thread, steps, self._stop, owner=self)
        loading = isinstance(self._job.model, Path)
        self._callbacks.status("Loading the model..." if loading else "Running...")
        QTimer.singleShot(_NEXT_TURN_MS, self._insert_layer)

    def _insert_layer(self) -> None:
        """Put the new layer in the viewer; the window repaints a turn later.

        napari asks for a repaint of the whole window as it inserts a layer, and Qt paints
        before it runs the timers due, so the insertion and the paint made one pause.
        Holding the window's painting until the next turn lets the viewer's timers and
        input come in between.
        """
        window = self._info.get("window")
        held = _hold_painting(window)
        try:
            if not self._stop.is_set():  # cancelled already: the viewer stays as it is
                self.snapshot.insert(self._viewer, in_steps=True)
        finally:
            QTimer.singleShot(_NEXT_TURN_MS, partial(self._paint_again, window if held else None))

    def _paint_again(self, window: Any) -> None:
        _resume_painting(window)
        QTimer.singleShot(_NEXT_TURN_MS, self._finish_layer)

    def _finish_layer(self) -> None:
        """Take one more step of putting the new layer in the viewer, then the next turn.

        A cancelled run takes no more steps: its layer is about to go, and the layer
        selected before Run stays selected.
        """
        if self._stop.is_set():
            self.snapshot.pending.clear()
        more = next_step(self.snapshot.pending)
        QTimer.singleShot(_NEXT_TURN_MS, self._finish_layer if more else self._start_worker)

    def _start_worker(self) -> None:
        """Open the progress bar and start the worker (which aborts at once if cancelled)."""
        loading = isinstance(self._job.model, Path)
        what = "loading the model for" if loading else "segmenting"
        self._bar = progress(total=0, desc=f"U-Net: {what} {self._info['layer'].name}")
        self.worker.start()

    def cancel(self) -> None:
        """Ask the worker to stop after the batch of tiles in progress."""
        if self.worker is not None:
            self._stop.set()  # the Python thread stops after the batch of tiles in progress
            self.worker.quit()
            self._callbacks.status("Cancelling...")

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self.worker is None or bool(self.worker.abort_requested)

    def _on_yielded(self, item: Any) -> None:
        if self.cancelled:
            return
        if isinstance(item, ModelLoaded):
            now = time.perf_counter()
            self._load_seconds, self._start = now - self._start, now
            self._callbacks.model_loaded(item)
            self._callbacks.status("Running...")
            self._bar.set_description(f"U-Net: segmenting {self._info['layer'].name}")
            return
        tile, item = item.labels, item.progress  # a LiveTile: labels made in the worker
        total = item.n_tiles * item.n_planes
        done = item.plane_number * item.n_tiles + item.tiles_done
        step, self._done = done - self._done, done
        self._write_tile(item.plane, item.region, tile)
        self._callbacks.status(f"Running: {done} of {total} tiles")
        if self._bar.total != total:
            self._bar.total = total
        self._bar.update(step)

    def _write_tile(
        self, plane: tuple[int, ...], region: tuple[slice, ...], tile: np.ndarray
    ) -> None:
        """Write the labels of a tile into the layer, redrawing only the pixels that changed.

        napari's ``data_setitem`` (the painting path) updates and redraws just those pixels;
        setting or refreshing the whole layer would redraw every pixel of the plane on view
        for every tile.  A tile of a plane that is not on view is only written: napari
        slices the layer's data anew when that plane comes into view.
        """
        target = self._view[plane][region]
        layer = self.snapshot.layer
        if not self._on_view(plane):
            target[...] = tile
            return
        if tile.size > _PAINT_LIMIT:
            # napari's painting path costs about a microsecond per pixel: a large tile is
            # written at once and only the view on screen is drawn again (not the layer's
            # thumbnail, extent or highlight).
            target[...] = tile
            layer.refresh(thumbnail=False, highlight=False, extent=False)
            return
        changed = np.nonzero(tile != target)
        if not changed[0].size:
            return
        starts = [part.indices(n)[0] for part, n in zip(region, target.shape)]
        canonical = [np.full(changed[0].size, i) for i in plane]
        canonical += [index + start for index, start in zip(changed, starts)]
        indices: list[Any] = [None] * len(canonical)
        for axis, index in zip(self._data_axis, canonical):
            indices[axis] = index
        layer.data_setitem(tuple(indices), tile[changed].astype(layer.data.dtype))

    def _on_view(self, plane: tuple[int, ...]) -> bool:
        """Whether the viewer shows (part of) the labels of ``plane`` (canonical order)."""
        dims, layer = self._viewer.dims, self.snapshot.layer
        if not plane or dims.ndisplay != 2:  # a 3D view shows every plane
            return True
        axes = self._info["layout"].output_axes
        position = layer.world_to_data(dims.point)
        return outputs.current_plane(axes, layer.data.shape, position) == tuple(plane)

    def _on_returned(self, result: Any) -> None:
        seconds = time.perf_counter() - self._start
        tiles = f"{_plural(self._done, 'tile')} in {seconds:.1f} s"
        if self._load_seconds is not None:
            tiles = f"model loaded in {self._load_seconds:.1f} s; {tiles}"
        self._callbacks.status(f"Done: {tiles}{_int8_text(result.int8)}.")
        if self.snapshot.layer not in self._viewer.layers:  # removed during the run
            self._viewer.layers.append(self.snapshot.layer)
        self._callbacks.returned(
            {
                "probabilities": result.probabilities,
                "axes": result.axes,
                "class_names": result.class_names,
                "layer": self.snapshot.layer,
                "image": self._info["layer"],
                "spatial": self._info["spatial"],
                # What was segmented, for the contrast of the instances.
                "pixels": self._job.image,
                "pixel_axes": self._job.options.axes,
            }
        )

    def _on_errored(self, exc: BaseException) -> None:
        self.snapshot.restore(self._viewer)
        self._callbacks.failed(exc)

    def _on_aborted(self) -> None:
        self.snapshot.restore(self._viewer)
        self._callbacks.status("Cancelled; the viewer is as it was before Run.")

    def _on_finished(self) -> None:
        self.worker = None
        self._callbacks.ended()
        self._bar.close()


def _hold_painting(window: Any) -> bool:
    """Stop Qt painting ``window`` (if it paints); return whether this call stopped it."""
    try:
        if window is None or not window.updatesEnabled():
            return False
        window.setUpdatesEnabled(False)
    except RuntimeError:  # the window is gone
        return False
    return True


def _resume_painting(window: Any) -> None:
    """Let Qt paint ``window`` again (all of it, at the next turn); None does nothing."""
    try:
        if window is not None:
            window.setUpdatesEnabled(True)
    except RuntimeError:  # the window is gone
        pass


def _int8_text(gate: Any) -> str:
    """How a run that asked for int8 went, for the status line ("" for other runs)."""
    if gate is None:
        return ""
    if gate.used == "int8":
        return f"; int8: {gate.describe()}"
    return f"; int8 fell short of float32 ({gate.describe()}), so {gate.used} ran"
