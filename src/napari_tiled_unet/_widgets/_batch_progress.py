"""Progress of a batch run in napari's activity dock: a bar over files, one over tiles.

Main thread only.  The two bars are siblings, each made once per run: napari 0.9's nested
bars (``nest_under``) crash Qt when a nested bar is closed, so the tiles bar is reset for
every file instead.  napari's progress bars process Qt events when they change, so a handler
may be re-entered from inside ``update``: every method records its state first and touches
the bars last.
"""

from __future__ import annotations

from typing import Any

from napari.utils import progress

from napari_tiled_unet.batch.events import FileStarted, PlaneProgress

__all__ = ["BatchProgress"]


class BatchProgress:
    """The files bar of a run and the tiles bar of the file in progress.

    Parameters
    ----------
    n_files : int
        Files in the run.
    loading : bool
        Whether the model is loaded first (said on the tiles bar until the first file).
    """

    def __init__(self, n_files: int, *, loading: bool = False) -> None:
        self._tiles_done = 0
        self._files: Any = progress(total=n_files, desc="U-Net batch: files")
        what = "loading the model" if loading else "tiles"
        self._tiles: Any = progress(total=0, desc=f"U-Net batch: {what}")

    def file_started(self, event: FileStarted) -> None:
        """Name the file on the tiles bar (its total comes with the first tiles)."""
        self._tiles_done = 0
        bar = self._tiles
        if bar is not None:
            bar.set_description(f"file {event.number + 1}/{event.n_files}: {event.path.name}")
            bar.reset(total=0)
            bar.update(0)  # tell the Qt bar that n went back to 0

    def plane(self, event: PlaneProgress) -> None:
        """Advance the tiles bar to ``event`` (tiles over all planes of the file)."""
        done = event.plane * event.n_tiles + event.tiles_done
        step, self._tiles_done = done - self._tiles_done, done
        bar = self._tiles
        if bar is None:
            return
        total = event.n_planes * event.n_tiles
        if bar.total != total:
            bar.total = total
        bar.update(step)

    def file_finished(self) -> None:
        """Count a file (done, skipped or failed alike)."""
        if self._files is not None:
            self._files.update(1)

    def close(self) -> None:
        """Remove both bars from the activity dock."""
        bars, self._files, self._tiles = (self._tiles, self._files), None, None
        for bar in bars:
            if bar is not None:
                bar.close()
