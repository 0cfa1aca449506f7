"""Batch segmentation of TIFF files: streaming, atomic, restartable (ring 2: no Qt).

:func:`iter_batch` is the engine, a generator of small frozen progress events that returns
a :class:`BatchSummary`; :func:`run_batch` drains it.  The command line plugs in tqdm, a
widget plugs in napari's ``thread_worker``.

- Inputs are read one plane at a time (one tile at a time for planes larger than
  ``max_plane_bytes``) and outputs are written plane by plane (band by band), so memory
  does not grow with the length of a stack.
- Each output is written under a hidden temporary name and renamed when complete; a rerun
  skips inputs whose outputs exist (``overwrite=True`` redoes them).  The same input, model
  and options give byte-identical files, however often a run was killed and restarted.
- A file that cannot be segmented is reported in one line and the batch goes on.
- ``stop`` (a ``threading.Event``) ends the run after the current plane; closing the
  generator ends it at once.  Either way the unfinished output is deleted.
- A run record (``napari-tiled-unet-run.json``) next to the outputs lists every file with
  its shape, axes, time and status, with the model's SHA-256 and the parameters, and which
  input made each output: an output made from another input is never skipped or replaced.
- One run at a time writes into an output folder; another waits (with one warning that
  names it) and starts by removing partial files that killed runs left behind.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.batch.events import (
    BatchEvent,
    BatchOptions,
    BatchSummary,
    FileFinished,
    FileResult,
    FileStarted,
    PlaneProgress,
    Status,
)
from napari_tiled_unet.batch.files import (
    RUN_RECORD,
    TiffSource,
    expand_inputs,
    nonfinite_note,
    output_folder,
    output_stem,
)
from napari_tiled_unet.batch.plan import FileJob, Rows, Tick, local_pages, plan_file

__all__ = [
    "BatchEvent",
    "BatchOptions",
    "BatchSummary",
    "FileFinished",
    "FileResult",
    "FileStarted",
    "PlaneProgress",
    "iter_batch",
    "run_batch",
]


#: Options that change the numbers in the outputs (``max_plane_bytes`` does not).
_RECIPE = (
    "axes",
    "tile_size",
    "memory_budget",
    "batch_size",
    "normalize",
    "probability_dtype",
    "object_size",
    "precision",
    "tta",
)


@dataclass
class _Context:
    unet: Any
    options: BatchOptions
    outdir: Path
    stop: Callable[[], bool]
    pages: Callable[[FileJob], Iterator[Tick | Rows]]
    model_sha256: str | None = None
    record: Any = None
    inputs: frozenset[Path] = frozenset()  # resolved paths of this run's inputs

    def other_recipe(self, path: Path) -> str:
        """Say how existing outputs of ``path`` were made differently ("" if alike/unknown)."""
        previous = self.record.made_with(path) if self.record is not None else None
        if previous is None:
            return ""
        sha = previous["model"].get("sha256")
        if sha and self.model_sha256 and sha != self.model_sha256:
            return "with another model"
        now = asdict(self.options)
        changed = [k for k in _RECIPE if previous["parameters"].get(k, now[k]) != now[k]]
        return f"with other options ({', '.join(changed)})" if changed else ""


def _stopper(stop: threading.Event | Callable[[], bool] | None) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    return stop.is_set if isinstance(stop, threading.Event) else stop


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, (ValueError, TypeError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _targets(path: Path, ctx: _Context) -> dict[str, Path]:
    stem = output_stem(path)
    names = {"labels": f"{stem}_labels.tif"}
    if ctx.options.probabilities:
        names["probabilities"] = f"{stem}_probabilities.tif"
    return {kind: ctx.outdir / name for kind, name in names.items()}


def _open_outputs(stack: ExitStack, job: FileJob, todo: dict[str, Path], ctx: _Context) -> dict:
    from napari_tiled_unet.batch.tiffout import TiffOutput

    writers = {}
    for kind, target in todo.items():
        probs = kind == "probabilities"
        writers[kind] = stack.enter_context(
            TiffOutput(
                target,
                shape=job.label_shape + ((ctx.unet.spec.num_classes,) if probs else ()),
                dtype=ctx.options.probability_dtype if probs else _label_dtype(job, ctx),
                axes=job.label_axes + ("C" if probs else ""),
                calibration=job.source.calibration,
            )
        )
    return writers


def _instances(ctx: _Context) -> bool:
    return ctx.options.instances_for(ctx.unet.spec.num_classes)


def _label_dtype(job: FileJob, ctx: _Context) -> Any:
    if not _instances(ctx):
        return job.label_dtype
    if job.streamed:
        raise ValueError(
            "instance labels need whole planes and this file's planes are streamed tile by "
            "tile; use --output classes"
        )
    return np.uint16


def _labels_to_write(item: Rows, job: FileJob, ctx: _Context) -> np.ndarray:
    """Class labels as computed, or instances of a whole plane (numbered from 1)."""
    if not _instances(ctx):
        return item.labels
    from napari_tiled_unet.core.outputs import instances_of

    n_classes, min_size = ctx.unet.spec.num_classes, ctx.options.min_size
    instances = instances_of(
        item.labels,
        n_classes,
        min_size=min_size,
        merge_diagonal=True,
        image=item.image,
        min_contrast=ctx.options.min_contrast,
    )
    if int(instances.max(initial=0)) > np.iinfo(np.uint16).max:
        raise ValueError("a plane has more than 65535 objects; use --output classes")
    return instances.astype(np.uint16)


def _segment_file(
    ctx: _Context, number: int, n_files: int, path: Path
) -> Generator[BatchEvent, None, FileResult]:
    start = time.perf_counter()
    targets = _targets(path, ctx)
    todo, problem = ctx.record.check_outputs(
        path, targets, overwrite=ctx.options.overwrite, inputs=ctx.inputs
    )
    if problem:
        return FileResult(str(path), "failed", problem)
    outputs = tuple(str(p) for p in targets.values())
    if not todo:
        other = ctx.other_recipe(path)
        if other:
            message = f"its outputs exist, made {other}; use overwrite or another output folder"
            return FileResult(str(path), "failed", message, outputs)
        return FileResult(str(path), "skipped", "outputs exist (overwrite to redo)", outputs)
    ctx.record.claim(path, todo.values())
    job: FileJob | None = None
    status: Status = "done"
    note = ""
    try:
        with TiffSource(path) as source, ExitStack() as stack:
            job = plan_file(source, ctx.unet, ctx.options)
            note = nonfinite_note(source, normalized=job.normalizer is not None)
            scale = job.rescale.describe() if job.rescale.model_size else ""
            yield FileStarted(number, n_files, path, source.shape, job.axes, len(job.order), scale)
            writers = _open_outputs(stack, job, todo, ctx)
            pages = ctx.pages(job)
            stack.callback(getattr(pages, "close", lambda: None))
            for item in pages:
                if isinstance(item, Rows):
                    for kind, writer in writers.items():
                        data = (
                            _labels_to_write(item, job, ctx)
                            if kind == "labels"
                            else item.probabilities
                        )
                        writer.write(item.page, data, item.row)
                    continue
                yield PlaneProgress(
                    number, n_files, path, item.page, len(job.order), item.done, item.total
                )
                if item.done == item.total and item.page < len(job.order) - 1 and ctx.stop():
                    status = "cancelled"
                    break
            else:
                for writer in writers.values():
                    writer.commit()
    except Exception as exc:  # one bad file must not end an overnight batch
        return FileResult(str(path), "failed", _one_line(exc), seconds=_since(start))
    assert job is not None
    message = "stopped; rerun to redo this file" if status == "cancelled" else note
    return FileResult(
        str(path),
        status,
        message,
        outputs if status == "done" else (),
        job.source.shape,
        job.axes,
        str(job.source.dtype),
        len(job.order),
        _since(start),
        job.details(ctx.unet),
    )


def _identity(path: Path) -> dict[str, Any]:
    from napari_tiled_unet.batch.record import input_identity

    try:
        return input_identity(path)
    except OSError:  # gone since: keep at least the path
        return {"input_path": str(path.resolve())}


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


def _model_info(unet: Any, model: Any) -> dict[str, Any]:
    from napari_tiled_unet.batch.modelref import file_sha256

    source = model if isinstance(model, (str, os.PathLike)) else unet.source
    return {
        "path": str(Path(source).resolve()) if source else None,
        "sha256": file_sha256(source) if source else None,
        "metadata": asdict(unet.metadata),
    }


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    names = ["napari-tiled-unet", "tensorflow", "keras", "numpy", "tifffile", "dask"]
    names.append("onnxruntime")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def iter_batch(
    inputs: Iterable[str | os.PathLike[str]],
    outdir: str | os.PathLike[str],
    *,
    model: Any,
    stop: threading.Event | Callable[[], bool] | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    client: Any = None,
    record_extra: dict[str, Any] | None = None,
    **options: Any,
) -> Generator[BatchEvent, None, BatchSummary]:
    """Segment TIFF files into ``outdir``, yielding progress events.

    Parameters
    ----------
    inputs : iterable of path-like
        Files, folders (every non-hidden file in them) and glob patterns.
    outdir : path-like
        Folder for ``<stem>_labels.tif``, ``<stem>_probabilities.tif`` and the run record.
    model : path-like or UNetModel
        The network (a file path is needed for Dask workers).
    stop : threading.Event or callable, optional
        When set (true), the run ends after the current plane; the unfinished file's
        outputs are deleted and its status is "cancelled".
    workers : int
        With more than 1, planes (and chunks of huge planes) run as Dask tasks on a local
        cluster of that many worker processes.
    scheduler : str, optional
        Address of an existing Dask scheduler to run on instead (inputs, outputs and model
        must be on a file system the workers share).
    client : distributed.Client, optional
        An existing client to run on.
    record_extra : dict, optional
        More information for the run record (e.g. the command line).
    **options
        Fields of :class:`BatchOptions`.

    Yields
    ------
    FileStarted, PlaneProgress, FileFinished

    Returns
    -------
    BatchSummary
        The generator's return value.

    Raises
    ------
    ValueError
        Before any work, with one line, when an input names nothing or the model cannot be
        loaded.
    """
    from napari_tiled_unet.core.prepare import resolve_model, runner

    opts = BatchOptions(**options)
    out = output_folder(outdir)
    files, problems = expand_inputs(inputs, exclude=out.resolve())
    if problems:
        raise ValueError(problems[0] + "; check the input paths")
    base = resolve_model(model)
    unet = runner(base, opts)  # in the run's precision, with its augmentation
    distributed = workers > 1 or bool(scheduler) or client is not None
    if distributed and not unet.calibrated:
        raise ValueError(
            "precision int8 runs in this process only; leave out --workers and --scheduler, "
            "or use precision bfloat16"
        )
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if not _lock_folder(stack, out, _stopper(stop), record_extra):
            return BatchSummary((), None, cancelled=True)
        files, _ = expand_inputs(inputs, exclude=out.resolve())  # outputs made while waiting
        pages: Callable[[FileJob], Iterator[Tick | Rows]]
        if not unet.calibrated:  # int8: quantised on this run's own images
            from napari_tiled_unet.batch.int8 import calibrated_runner

            unet = calibrated_runner(unet, files, opts)
        if distributed:
            from napari_tiled_unet.batch.cluster import connect, dask_pages

            dask_client = client or stack.enter_context(connect(workers, scheduler))
            pages = dask_pages(dask_client, model, base, opts)
        else:
            pages = lambda job: local_pages(job, unet, opts)  # noqa: E731
        given = frozenset(p.resolve() for p in files)
        ctx = _Context(unet, opts, out, _stopper(stop), pages, inputs=given)
        return (yield from _run(ctx, files, model, record_extra or {}))


def _lock_folder(
    stack: ExitStack, out: Path, stop: Callable[[], bool], extra: dict[str, Any] | None
) -> bool:
    """Wait for the output folder's lock (False if stopped first); clean up dead runs."""
    from napari_tiled_unet.batch.folderlock import FolderLock
    from napari_tiled_unet.batch.tiffout import remove_stale_files

    lock = stack.enter_context(FolderLock(out, {"command": (extra or {}).get("command")}))
    if not lock.acquire(stop=stop):
        return False
    remove_stale_files(out, locked=lock.held)
    return True


def _run(
    ctx: _Context, files: list[Path], model: Any, extra: dict[str, Any]
) -> Generator[BatchEvent, None, BatchSummary]:
    from napari_tiled_unet.batch.record import RunRecord

    model_info = _model_info(ctx.unet, model)
    run = {**extra, "parameters": asdict(ctx.options), "model": model_info}
    if ctx.unet.int8 is not None:  # how int8 fared against float32, and what was used
        run["int8"] = ctx.unet.int8.to_dict()
    record = RunRecord(ctx.outdir / RUN_RECORD, {**run, "versions": _versions()})
    ctx.record, ctx.model_sha256 = record, model_info["sha256"]
    results: list[FileResult] = []
    claimed: dict[str, Path] = {}  # output stem -> the input that has it
    status = "cancelled"
    try:
        for number, path in enumerate(files):
            first = claimed.setdefault(output_stem(path).casefold(), path)
            if first != path:
                result = FileResult(
                    str(path),
                    "failed",
                    f"same output names as {first}; segment it into another output folder",
                )
            else:
                result = yield from _segment_file(ctx, number, len(files), path)
            results.append(result)
            record.add_file({**asdict(result), **_identity(path)})
            yield FileFinished(number, len(files), result)
            if result.status == "cancelled" or (ctx.stop() and number < len(files) - 1):
                break
        else:
            failed = any(r.status == "failed" for r in results)
            status = "completed with failures" if failed else "completed"
    finally:
        record.finish(status)
    return BatchSummary(tuple(results), record.path, cancelled=status == "cancelled")


def run_batch(
    inputs: Iterable[str | os.PathLike[str]], outdir: str | os.PathLike[str], **kwargs: Any
) -> BatchSummary:
    """Run :func:`iter_batch` to the end and return its :class:`BatchSummary`."""
    from napari_tiled_unet.core.predict import drain

    summary: BatchSummary = drain(iter_batch(inputs, outdir, **kwargs))
    return summary


def summary_counts(summary: BatchSummary) -> dict[str, int]:
    """Files per status, e.g. ``{"done": 3, "failed": 1}`` (statuses with no file left out)."""
    counts = {s: summary.count(s) for s in ("done", "skipped", "failed", "cancelled")}
    return {s: n for s, n in counts.items() if n}
