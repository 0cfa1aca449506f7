"""Tile sizes timed on this machine: a short calibration per network and precision.

:func:`tune_tiles` times a network on a ladder of square tiles and caches the
:class:`~napari_tiled_unet.core.timings.TileTimings`; automatic tile choices of the same
architecture and precision on this machine follow them from then on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_tiled_unet.core.prepare import resolve_model, runner
from napari_tiled_unet.core.tiling import (
    activation_bytes,
    default_memory_budget,
    parse_bytes,
    tile_flops,
)
from napari_tiled_unet.core.timings import TileTimings, machine_id, save_timings

__all__ = ["tile_ladder", "tune_tiles"]

#: The ladder never goes past this many bytes of activations per call: twice the call size
#: beyond which TensorFlow's CPU convolutions slowed down on one CPU, so that such a
#: slow-down is measured where it exists.
_LADDER_BYTES = 4 * 2**30


def tile_ladder(spec: Any, memory_budget: int, count: int = 6) -> list[int]:
    """Up to ``count`` valid square tile sizes, roughly evenly spaced in activation memory.

    From the smallest tile with one alignment step of output to the largest whose
    activations fit both ``memory_budget`` and 4 GiB.
    """
    limit = min(memory_budget, _LADDER_BYTES)
    smallest = spec.smallest_input_for_output(spec.alignment)
    sizes: list[int] = []
    size = smallest
    while activation_bytes(spec, (size, size)) <= limit or not sizes:
        sizes.append(size)
        size += spec.alignment
    if len(sizes) <= count:
        return sizes
    acts = np.array([activation_bytes(spec, (s, s)) for s in sizes], float)
    targets = np.linspace(np.sqrt(acts[0]), np.sqrt(acts[-1]), count) ** 2
    picks = sorted({int(np.argmin(np.abs(acts - t))) for t in targets})
    return [sizes[k] for k in picks]


def _timed(unet: Any, batch: np.ndarray, *, enough: float = 0.5, most: int = 3) -> float:
    """Fastest of up to ``most`` warm calls, stopping once ``enough`` seconds are spent."""
    best, spent = np.inf, 0.0
    for _ in range(most):
        start = time.perf_counter()
        unet.predict_batch(batch)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent >= enough:
            break
    return float(best)


def tune_tiles(
    model: Any,
    *,
    precision: str = "float32",
    memory_budget: int | str | None = None,
    sizes: Sequence[int] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TileTimings:
    """Time ``model`` on a ladder of tile sizes on this machine and cache the result.

    Parameters
    ----------
    model : UNetModel, Keras model or path
        The network (only its architecture matters for the timings).
    precision : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"`` (where the machine runs it; int8
        runs through ONNX Runtime, whose tiles follow the FLOP model).
    memory_budget : int or str, optional
        The largest activation memory to try (default: :func:`default_memory_budget`).
    sizes : sequence of int, optional
        Square input tiles to time instead of :func:`tile_ladder` (valid sizes).
    progress : callable, optional
        Called as ``progress(size, seconds)`` after each tile.

    Each size is called on random data once to compile the shape, then timed (the fastest
    of up to 3 calls, fewer once half a second is spent).  A size that runs out of memory
    ends the ladder.  Returns the timings, also written to the cache, where later automatic
    tile choices of the same architecture and precision on this machine find them.
    """
    from napari_tiled_unet.core.memory import is_out_of_memory
    from napari_tiled_unet.core.options import SegmentOptions

    if str(precision).lower() == "int8":
        raise ValueError(
            "int8 runs through ONNX Runtime and is not tuned; tune float32 or bfloat16"
        )
    unet = runner(resolve_model(model), SegmentOptions(precision=precision))
    spec = unet.spec
    if spec.fixed_input_size is not None:
        raise ValueError(
            f"this model takes one input size only ({spec.fixed_input_size}); "
            "there is no tile size to tune"
        )
    budget = default_memory_budget() if memory_budget is None else parse_bytes(memory_budget)
    ladder = list(sizes) if sizes is not None else tile_ladder(spec, budget)
    for size in ladder:
        if spec.output_size(int(size)) is None:
            raise ValueError(
                f"tile size {size} is not valid for this depth-{spec.depth} U-Net; "
                f"try {spec.nearest_valid_input_size(int(size))}"
            )
    rng = np.random.default_rng(0)
    done: list[tuple[int, float]] = []
    for size in sorted(int(s) for s in ladder):
        batch = rng.random((1, size, size, spec.input_channels), dtype=np.float32)
        try:
            unet.predict_batch(batch)
            seconds = _timed(unet, batch)
        except Exception as exc:
            if not is_out_of_memory(exc) or not done:
                raise
            break
        done.append((size, seconds))
        if progress is not None:
            progress(size, seconds)
    timings = TileTimings(
        tuple(s for s, _ in done),
        tuple(t for _, t in done),
        tuple(activation_bytes(spec, (s, s)) for s, _ in done),
        tuple(tile_flops(spec, (s, s)) for s, _ in done),
        machine_id(),
        unet.precision,
    )
    save_timings(timings, spec, unet.tta)
    return timings
