"""Ring 2: files, stacks, Dask, zarr, run records and the models folder (no Qt).

``iter_batch`` and ``run_batch`` (:mod:`napari_tiled_unet.batch.run`) are importable from
here; they load on first use, so importing a module of this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["iter_batch", "run_batch"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from napari_tiled_unet.batch import run

    return getattr(run, name)


if TYPE_CHECKING:  # pragma: no cover - for static type checkers only
    from napari_tiled_unet.batch.run import iter_batch, run_batch
