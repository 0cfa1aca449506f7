"""Run a worker generator in a plain Python thread; napari's pool thread only relays.

napari's ``thread_worker`` runs generators in Qt's thread pool, whose threads get a new
Python thread state for every task.  TensorFlow's pybind11 bindings remember the thread
state they last saw in a thread, so a later task in a reused pool thread can take the GIL
with a freed thread state and crash (seen in a fresh napari under Xvfb: a segfault in
``pybind11::gil_scoped_acquire``, or a hang, on the second to fourth run).  Every widget
therefore does its TensorFlow work in a plain Python thread, which keeps one thread state
for its whole life, and the pool thread only passes on the events: plain Python objects.

No Qt here.
"""

from __future__ import annotations

import gc
import queue
import threading
import traceback
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["in_python_thread"]


def in_python_thread(
    steps: Callable[[], Generator[Any, None, Any]],
    stop: threading.Event,
    *,
    collect: bool = False,
) -> Generator[Any, None, Any]:
    """Run the generator ``steps()`` in a new Python thread and yield what it yields.

    Parameters
    ----------
    steps : callable
        Makes the generator; it is called, iterated and closed in the new thread.
    stop : threading.Event
        Set it to close the generator after the item in progress.  Closing (or finishing)
        this relay sets it too.
    collect : bool
        Run a full garbage collection in the new thread at the end, so that TensorFlow
        objects caught in reference cycles are freed there.  It holds the GIL for a few
        hundred milliseconds in a large session, so the viewer stalls that long: worth it
        at the end of a training run, not after every segmentation.

    Returns
    -------
    object
        The generator's return value, or None when it was stopped.

    Raises
    ------
    Exception
        Whatever the generator raised (with its traceback's frames cleared).
    """
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    thread = threading.Thread(
        target=_drain,
        args=(steps, stop, items, collect),
        name="napari-tiled-unet worker",
        daemon=True,
    )
    thread.start()
    try:
        while True:
            kind, item = items.get()
            if kind == "item":
                yield item
            elif kind == "error":
                raise item
            else:
                return item
    finally:
        stop.set()


def _drain(
    steps: Callable[[], Generator[Any, None, Any]],
    stop: threading.Event,
    items: queue.Queue[tuple[str, Any]],
    collect: bool,
) -> None:
    """Iterate ``steps()`` into ``items``; free its objects here, in the thread that made them."""
    message: tuple[str, Any]
    try:
        message = _iterate(steps, stop, items)
    except BaseException as exc:  # handed over to the relay, which raises it
        cause: BaseException | None = exc
        while cause is not None:  # let go of the objects that the frames hold
            traceback.clear_frames(cause.__traceback__)
            cause = cause.__cause__ or cause.__context__
        message = ("error", exc.with_traceback(None))
    if collect:
        gc.collect()
    items.put(message)


def _iterate(
    steps: Callable[[], Generator[Any, None, Any]],
    stop: threading.Event,
    items: queue.Queue[tuple[str, Any]],
) -> tuple[str, Any]:
    generator = steps()
    try:
        while not stop.is_set():
            items.put(("item", next(generator)))
    except StopIteration as end:
        return ("done", end.value)
    finally:
        generator.close()
    return ("done", None)
