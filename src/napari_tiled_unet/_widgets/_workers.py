"""Everything the widgets run off the main thread: the jobs, their steps, and the thread.

The main thread checks a form and builds a job (:class:`Job`, :class:`BatchJob`,
:class:`TrainJob`); a worker runs its steps (:func:`segment_steps`, :func:`batch_steps`,
:func:`train_steps`), which load the model once (:class:`ModelLoaded`) and then relay the
core's and the batch engine's progress events.  No Qt and no layers here: the generators
only yield data; the main thread updates the viewer.

Run a worker generator in a plain Python thread; napari's pool thread only relays.

napari's ``thread_worker`` runs generators in Qt's thread pool, whose threads get a new
Python thread state for every task.  TensorFlow's pybind11 bindings remember the thread
state they last saw in a thread, so a later task in a reused pool thread can take the GIL
with a freed thread state and crash (seen in a fresh napari under Xvfb: a segfault in
``pybind11::gil_scoped_acquire``, or a hang, on the second to fourth run).  Every widget
therefore does its TensorFlow work in a plain Python thread, which keeps one thread state
for its whole life, and the pool thread only passes on the events: plain Python objects.

"""

from __future__ import annotations

import gc
import queue
import threading
import traceback
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from napari_tiled_unet.batch.events import BatchOptions
from napari_tiled_unet.core.options import SegmentOptions
from napari_tiled_unet.core.tiling import TilePlan

__all__ = [
    "BatchJob",
    "Job",
    "LiveTile",
    "ModelLoaded",
    "TrainJob",
    "batch_steps",
    "import_in_background",
    "in_python_thread",
    "model_key",
    "segment_steps",
    "train_steps",
]


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


#: Modules that napari imports on the main thread the first time a run needs them: pandas
#: when the first Labels layer is made (for its features table), about half a second in
#: which the viewer cannot react, and scikit-image's colour module for its colormap.
#: Imported ahead, in a thread, when a dock opens.
MAIN_THREAD_IMPORTS = ("pandas", "skimage.color.colorconv")

#: Whether :func:`import_in_background` has frozen the objects of the session (once).
_frozen = threading.Event()


def import_in_background(modules: tuple[str, ...] = MAIN_THREAD_IMPORTS) -> threading.Thread:
    """Import ``modules`` in a daemon thread (those already imported are skipped).

    Python releases the GIL every few milliseconds while it runs an import's module code,
    so the viewer stays responsive; later imports of these modules on the main thread then
    cost nothing.  A module that fails to import is left to fail where it is needed.

    The first time, the thread also builds what napari and vispy build once per session
    for the first labels layer (:func:`_first_labels_layer_tables`), then moves every
    object alive out of the garbage collector's sight (:func:`gc.freeze`): napari's, Qt's
    and these modules' objects live as long as the session, and a full collection that
    traverses them holds the GIL for about 0.2 s; the first run's new layer triggered one
    on the main thread.
    """
    import importlib
    import sys

    def run() -> None:
        for name in modules:
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except Exception:  # the real import, where it is needed, reports it
                    pass
        if not _frozen.is_set():
            _frozen.set()
            _first_labels_layer_tables()
            gc.freeze()

    thread = threading.Thread(target=run, name="napari-tiled-unet imports", daemon=True)
    thread.start()
    return thread


def _first_labels_layer_tables() -> None:
    """Build, off the main thread, the tables napari makes for its first labels layer.

    A labels layer model's colormaps, and vispy's dash patterns for the layer's polygon
    overlay, take about 0.1 s together the first time and are cached after that.  The
    layer made here is thrown away and never shown; no Qt object is touched.  Failures are
    left to the real layer.
    """
    try:
        import numpy as np
        from napari.layers import Labels

        Labels(np.zeros((1, 1), np.uint8))
        from vispy.visuals.line.dash_atlas import DashAtlas

        DashAtlas()
    except Exception:  # another napari or vispy: nothing is prepared, nothing breaks
        pass


@dataclass(frozen=True)
class ModelLoaded:
    """First message of a run that had to load its model, so the widget can keep it."""

    key: tuple[str, int, int]
    unet: Any


def model_key(path: str | Path) -> tuple[str, int, int]:
    """Identify a model file by path, modification time and size (a changed file reloads)."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def _model(model: Any, key: tuple[str, int, int]) -> Generator[ModelLoaded, None, Any]:
    """Return the job's model, loading it (and saying so with :class:`ModelLoaded`) once."""
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.files import UNetModel, load_model

    if isinstance(model, UNetModel):
        return model
    with _no_collection_pauses():
        get_keras()  # isolated from Mesa's LLVM, see _keras._isolated_dlopen
        unet = load_model(model)
    yield ModelLoaded(key, unet)
    return unet


@contextmanager
def _no_collection_pauses() -> Iterator[None]:
    """Import TensorFlow and load a model without garbage-collection pauses in the viewer.

    TensorFlow's import creates hundreds of thousands of Python objects, and a full
    collection that it triggers holds the GIL, in whichever thread, for more than half a
    second: the viewer freezes.  Collection waits until the model is loaded; then every
    object alive is moved out of the collector's sight (:func:`gc.freeze`): modules,
    classes and the model live as long as the session, and later collections skip them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Job:
    """Everything a Segment run needs, checked on the main thread before the worker starts.

    Attributes
    ----------
    model : UNetModel or pathlib.Path
        A model loaded by an earlier run, or the file to load.
    key : tuple
        Identity of the model file (path, modification time, size).
    image : array-like
        The layer's data (full resolution of a multiscale layer).
    options : SegmentOptions
        Axes, tiling, normalisation and object size.
    planes : list of tuple of int, optional
        The planes to segment (default: all).
    plan : TilePlan, optional
        The tile plan of one plane, as shown before Run (default: planned by the run).
    """

    model: Any
    key: tuple[str, int, int]
    image: Any
    options: SegmentOptions = field(default_factory=SegmentOptions)
    planes: list[tuple[int, ...]] | None = None
    plan: TilePlan | None = None
    threshold: float = 0.5


@dataclass(frozen=True)
class LiveTile:
    """A tile event of the core with the class labels of its region, made in the worker.

    Attributes
    ----------
    progress : TileProgress
        The core's event (plane, region, probabilities, counts).
    labels : numpy.ndarray
        Class labels of ``progress.region`` at the run's threshold, so that the main
        thread only writes them into the layer (for a 1024 x 1024 tile the labels take
        about 0.1 s, which the viewer would otherwise spend frozen).
    """

    progress: Any
    labels: Any


def segment_steps(job: Job) -> Generator[Any, None, Any]:
    """Run ``job``: yield :class:`ModelLoaded` (if loading), then a :class:`LiveTile` per event.

    Closing the generator (a cancelled worker) closes the core's generator too, which
    stops after the batch of tiles in progress.

    Returns
    -------
    SegmentationResult
    """
    from napari_tiled_unet.batch.segment import iter_segment
    from napari_tiled_unet.core.outputs import class_labels

    unet = yield from _model(job.model, job.key)
    steps = iter_segment(unet, job.image, job.options, planes=job.planes, plan=job.plan)
    try:
        while True:
            item = next(steps)
            yield LiveTile(item, class_labels(item.probabilities, threshold=job.threshold))
    except StopIteration as end:
        return end.value
    finally:
        steps.close()


@dataclass(frozen=True)
class BatchJob:
    """Everything a batch run needs, checked on the main thread before the worker starts.

    Attributes
    ----------
    inputs : tuple of str
        Folders, files and glob patterns for :func:`~napari_tiled_unet.batch.run.iter_batch`.
    outdir : pathlib.Path
        The output folder.
    model : UNetModel or pathlib.Path
        A model loaded by an earlier run, or the file to load.
    key : tuple
        Identity of the model file (path, modification time, size).
    options : BatchOptions
        The options of the batch engine.
    """

    inputs: tuple[str, ...]
    outdir: Path
    model: Any
    key: tuple[str, int, int]
    options: BatchOptions = field(default_factory=BatchOptions)


def batch_steps(job: BatchJob, stop: threading.Event) -> Generator[Any, None, Any]:
    """Run ``job``: yield :class:`ModelLoaded` (if loading), then the batch engine's events.

    Setting ``stop`` ends the run after the plane in progress (before the first file when
    it is set while the model loads).

    Returns
    -------
    BatchSummary or None
        None when the run was stopped before it started.
    """
    from dataclasses import asdict

    from napari_tiled_unet.batch.run import iter_batch

    unet = yield from _model(job.model, job.key)
    if stop.is_set():
        return None
    extra = {"source": "napari"}
    options = asdict(job.options)
    return (
        yield from iter_batch(
            job.inputs, job.outdir, model=unet, stop=stop, record_extra=extra, **options
        )
    )


@dataclass(frozen=True)
class TrainJob:
    """Everything a training run needs, checked on the main thread before it starts.

    Attributes
    ----------
    images, labels : list of ndarray
        Training planes (see :func:`training_planes`).
    val_images, val_labels : list of ndarray
        Validation planes (may be empty).
    ignore, val_ignore : list of (ndarray of bool or None)
        Per plane, True where not annotated (loss weight 0); empty when all is annotated.
    target : pathlib.Path
        The ``.keras`` file written after every improvement and at the end.
    settings : dict
        Keyword arguments of :class:`~napari_tiled_unet.core.train.config.TrainConfig`: the
        network's shape for a new model, the training schedule in any case.
    init : pathlib.Path, optional
        The model to fine-tune; its shape (and recorded settings) replace ``settings``'
        shape, see :meth:`~napari_tiled_unet.core.train.config.TrainConfig.for_model`.
    """

    images: list[Any]
    labels: list[Any]
    target: Path
    settings: dict[str, Any]
    val_images: list[Any] = field(default_factory=list)
    val_labels: list[Any] = field(default_factory=list)
    init: Path | None = None
    ignore: list[Any] = field(default_factory=list)
    val_ignore: list[Any] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        """Steps of the whole run."""
        return int(self.settings["steps_per_epoch"]) * int(self.settings["epochs"])


_SHAPE = ("num_classes", "depth", "base_filters")


def train_steps(job: TrainJob, stop: threading.Event) -> Generator[Any, None, Path | None]:
    """Train as ``job`` says in a Python thread; yield its ``TrainProgress`` events.

    Returns
    -------
    pathlib.Path or None
        The saved model file, or None when ``stop`` was set: the file then holds the best
        model of the epochs that finished (nothing new when none did).
    """
    return (yield from in_python_thread(partial(_train, job), stop, collect=True))


def _train(job: TrainJob) -> Generator[Any, None, Path]:
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.files import load_model, save_model
    from napari_tiled_unet.core.train.config import TrainConfig
    from napari_tiled_unet.core.train.trainer import iter_train

    get_keras()  # isolated from Mesa's LLVM, see _keras._isolated_dlopen
    init = None
    if job.init is None:
        config = TrainConfig(**job.settings)
    else:
        init = load_model(job.init)
        schedule = {k: v for k, v in job.settings.items() if k not in _SHAPE}
        config = TrainConfig.for_model(init.metadata, **schedule)
    model = yield from iter_train(
        config,
        job.images,
        job.labels,
        val_images=job.val_images or None,
        val_labels=job.val_labels or None,
        ignore=job.ignore if any(m is not None for m in job.ignore) else None,
        val_ignore=job.val_ignore if any(m is not None for m in job.val_ignore) else None,
        init=init,
        checkpoint=job.target,
    )
    save_model(model, job.target)
    return job.target
