"""What the Batch widget checks and says (no Qt, no layers).

:func:`batch_inputs` and :func:`count_inputs` catch the mistakes a user can fix at once,
before the main thread builds a :class:`~napari_tiled_unet._widgets._workers.BatchJob`;
the texts of the status line and the summary come from the functions at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_tiled_unet.batch.events import BatchSummary, FileResult, PlaneProgress

__all__ = [
    "batch_inputs",
    "count_inputs",
    "object_size_field",
    "output_folder_field",
    "describe_end",
    "labels_output",
    "progress_line",
    "summary_line",
    "summary_rows",
]

_NO_INPUT = (
    "no input: choose an input folder, or type a pattern such as /data/exp1/*.tif under Files"
)
#: Order of the statuses in the summary table: what needs attention first.
_ORDER = {"failed": 0, "cancelled": 1, "done": 2, "skipped": 3}


def batch_inputs(folder: str, pattern: str) -> tuple[str, ...]:
    """Combine the input folder and the Files pattern into inputs of the batch engine.

    Parameters
    ----------
    folder : str
        The input folder ("" when none is chosen).
    pattern : str
        "" for every file in ``folder``; a glob pattern relative to ``folder`` (``*.tif``);
        or an absolute pattern or file that stands alone (``/data/exp1/*.tif``).

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        When neither is given, or a relative pattern has no folder.
    """
    folder, pattern = folder.strip(), os.path.expanduser(pattern.strip())
    if pattern and os.path.isabs(pattern):
        return (pattern,)
    if not folder:
        if pattern:
            raise ValueError(
                f"the pattern {pattern} needs an input folder; choose one, or type a full "
                "path such as /data/exp1/*.tif"
            )
        raise ValueError(_NO_INPUT)
    base = Path(folder).expanduser()
    return (str(base / pattern) if pattern else str(base),)


def output_folder_field(text: str) -> Path:
    """Return the Output folder field as a path (one-line ValueError when unusable)."""
    if not text:
        raise ValueError("no output folder: choose one under Output folder")
    outdir = Path(text).expanduser()
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"{outdir} is a file; choose a folder under Output folder")
    return outdir


def object_size_field(text: str) -> str | float | None:
    """Read the Object size field as the batch engine takes it (one-line error if unreadable)."""
    from napari_tiled_unet.core.sizing import parse_object_size

    value = parse_object_size(text.strip() or None)
    return None if value == "auto" else value


def count_inputs(inputs: tuple[str, ...], outdir: Path) -> int:
    """Return how many files ``inputs`` name (one-line ValueError when one names nothing)."""
    from napari_tiled_unet.batch.files import expand_inputs

    files, problems = expand_inputs(inputs, exclude=outdir.expanduser().resolve())
    if problems:
        raise ValueError(problems[0] + "; check the input folder and Files")
    return len(files)


def progress_line(event: PlaneProgress) -> str:
    """Status line of a plane in progress, e.g. ``file 3/10: stack.tif plane 5/32``."""
    text = f"file {event.number + 1}/{event.n_files}: {event.path.name}"
    text += f" plane {event.plane + 1}/{event.n_planes}"
    if event.n_tiles > 1:
        text += f", tile {event.tiles_done}/{event.n_tiles}"
    return text


def summary_line(results: list[FileResult] | tuple[FileResult, ...]) -> str:
    """Count files per status, e.g. ``2 done, 0 skipped, 1 failed`` (cancelled if any)."""
    counts = {s: sum(r.status == s for r in results) for s in _ORDER}
    text = f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
    return text + (f", {counts['cancelled']} cancelled" if counts["cancelled"] else "")


def summary_rows(results: list[FileResult] | tuple[FileResult, ...]) -> list[FileResult]:
    """Order results for the table: failed and cancelled files first, then input order."""
    return sorted(results, key=lambda r: _ORDER[r.status])


def labels_output(result: FileResult) -> Path | None:
    """Return the labels file of ``result`` if it exists (done, skipped), else None."""
    for output in result.outputs:
        if output.endswith("_labels.tif") and Path(output).is_file():
            return Path(output)
    return None


def describe_end(summary: BatchSummary | None, seconds: float) -> str:
    """Status line at the end of a run."""
    if summary is None:
        return "Cancelled before the first file; nothing was written."
    if summary.cancelled:
        return f"Cancelled ({summary_line(summary.files)}); nothing half-written is left."
    return f"Finished in {seconds:.1f} s: {summary_line(summary.files)}."
