"""Terminal progress for batch runs: tqdm bars and one line per problem (ring 2)."""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

from napari_tiled_unet.batch.run import (
    BatchEvent,
    BatchSummary,
    FileFinished,
    FileStarted,
    PlaneProgress,
    summary_counts,
)
from napari_tiled_unet.core.predict import drain

__all__ = ["TqdmProgress"]


class TqdmProgress:
    """Drive a batch generator, showing a bar over files and one over the current file.

    Each failed file is one line on stderr (``napari-tiled-unet: error: PATH: why``); the
    paths of written outputs and, unless the run was cancelled, a summary line go to stdout.

    Parameters
    ----------
    quiet : bool
        No bars (problems and the summary are still printed).
    """

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._files: Any = None
        self._planes: Any = None

    def _bar(self, **kwargs: Any) -> Any:
        from tqdm import tqdm

        return tqdm(disable=self.quiet, file=sys.stderr, dynamic_ncols=True, **kwargs)

    def _say(self, text: str, stream: Any = None) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=stream or sys.stderr)  # looked up now: tests swap sys.stderr

    def handle(self, event: BatchEvent) -> None:
        """Update the bars for one event."""
        if isinstance(event, FileStarted):
            if self._files is None:
                self._files = self._bar(total=event.n_files, unit="file", position=0)
            self._close_planes()
            if event.scale and not self.quiet:
                self._say(f"{event.path.name}: {event.scale}")
            self._planes = self._bar(
                total=event.n_planes, unit="plane", desc=event.path.name, position=1, leave=False
            )
        elif isinstance(event, PlaneProgress) and self._planes is not None:
            self._planes.n = round(event.plane + event.tiles_done / event.n_tiles, 3)
            self._planes.refresh()
        elif isinstance(event, FileFinished):
            self._close_planes()
            result = event.result
            if result.status == "failed":
                self._say(f"napari-tiled-unet: error: {result.input}: {result.message}")
            elif result.status == "done":
                for path in result.outputs:
                    self._say(path, sys.stdout)
            if self._files is not None:
                self._files.update(1)

    def _close_planes(self) -> None:
        if self._planes is not None:
            self._planes.close()
            self._planes = None

    def drain(self, steps: Generator[BatchEvent, None, BatchSummary]) -> BatchSummary:
        """Run ``steps`` to the end and return its summary."""
        try:
            summary: BatchSummary = drain(steps, self.handle)
        finally:
            self._close_planes()
            if self._files is not None:
                self._files.close()
            steps.close()
        if not summary.cancelled:  # the caller reports a cancelled run in one line
            counts = ", ".join(f"{n} {status}" for status, n in summary_counts(summary).items())
            self._say(
                f"napari-tiled-unet: {counts or 'no files'}; record: {summary.record}", sys.stdout
            )
        return summary
