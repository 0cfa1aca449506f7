"""The paper's overlap-tile strategy as pure numpy: tile plans, mirrored inputs, stitching.

Nothing here knows about Keras.  A :class:`TilePlan` covers an image with output tiles whose
origins are multiples of the network's alignment (``2**depth``), so that every tile's
max-pooling grid coincides with the grid of one pass over the whole mirror-padded image and
the stitched result equals that pass.  Inputs are cut with their ``halo`` of context; outside
the image the context is the image mirrored at its border (numpy's ``"reflect"``).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_tiled_unet.core.model.geometry import NetworkSpec
from napari_tiled_unet.core.model.matmul_conv import MIN_CHANNELS

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "RUNTIME_FACTORS",
    "NetworkSpec",
    "Tile",
    "TilePlan",
    "activation_bytes",
    "axis_origins",
    "cut_tile",
    "default_memory_budget",
    "parse_bytes",
    "plan_tiles",
    "reflect_indices",
    "tile_flops",
]

#: Activation-memory budget (bytes) where the available memory cannot be read.
DEFAULT_MEMORY_BUDGET = 2 * 2**30
# The default budget is this share of the memory available when a run starts, within limits:
# the rest is the image, its probabilities, the model and the other programs.
_AVAILABLE_SHARE = 0.25
_BUDGET_LIMITS = (256 * 2**20, 8 * 2**30)
_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "tib": 2**40,
}  # fmt: skip
# TensorFlow's CPU kernels (oneDNN) hold workspace beyond the live tensors: the measured
# peak RSS increase of one forward pass was 1.2-1.8x the live-tensor count (benchmarks/).
_RUNTIME_FACTOR = 1.8
#: Peak memory of one network call over the float32 live-tensor count, per runtime.  ONNX
#: Runtime (int8 models, no memory arena) measured 1.2-1.7x for tiles of 892 px and more
#: (uint8 activations, but float32 ones around the quantised operators, and prepacked
#: weights), up to 2.1x for 572 px tiles, whose extra 50-150 MiB is fixed cost that no
#: budget-sized tile is near (benchmarks/bench_int8_memory.py --factor).
RUNTIME_FACTORS = {"tensorflow": _RUNTIME_FACTOR, "onnxruntime": 1.7}
_MAX_BATCH = 16
# Automatic tiles keep one call's activation estimate within this, whatever the budget:
# beyond it TensorFlow's CPU convolutions slow down (benchmarks/bench_inference.py, paper
# model, float32: 0.06-0.08 Mpx/s of output at 0.9-1.9 GiB per call, 0.026 Mpx/s at 4.2 GiB;
# the bundled model ran at 0.9-1.0 Mpx/s up to 1.9 GiB), so several calls of moderate tiles
# beat one huge call.
_FAST_CALL_BYTES = 2 * 2**30
# A network call's fixed cost, as multiply-add work (about 5 ms at 200 GFLOP/s).
_CALL_OVERHEAD_FLOPS = 1e9


def activation_bytes(
    spec: NetworkSpec, tile_in: tuple[int, int], batch: int = 1, *, runtime: str = "tensorflow"
) -> int:
    """Estimate the peak activation memory (bytes) of one forward pass.

    Walks the network layer by layer and takes the largest sum of float32 tensors alive at
    once (the skip connections held for the expanding path plus a layer's input and output),
    times the overhead measured for ``runtime`` on the CPU (:data:`RUNTIME_FACTORS`:
    ``"tensorflow"``, or ``"onnxruntime"`` for int8 models).
    """
    if runtime not in RUNTIME_FACTORS:
        raise ValueError(f"runtime must be one of {sorted(RUNTIME_FACTORS)}, got {runtime!r}")
    h, w = tile_in
    chans, live_skips, peak = spec.input_channels, 0, 0
    shrink = 0 if spec.padded_halo is not None else 2  # px a 3x3 convolution takes away

    def step(pixels_in: int, c_in: int, pixels_out: int, c_out: int, extra: int = 0) -> None:
        nonlocal peak
        peak = max(peak, live_skips + pixels_in * c_in + pixels_out * c_out + extra)

    def conv(pixels_in: int, c_in: int, pixels_out: int, c_out: int) -> None:
        extra = 0
        if runtime == "tensorflow" and min(c_in, c_out) >= MIN_CHANNELS:
            # a wide convolution as matrix products (core.model.matmul_conv): one band of
            # column-shifted inputs and one partial product alive besides the sum
            extra = pixels_out * (3 * c_in + c_out)
        step(pixels_in, c_in, pixels_out, c_out, extra)

    sizes = []
    for level in range(spec.depth + 1):
        f = spec.base_filters * 2**level
        conv(h * w, chans, (h - shrink) * (w - shrink), f)
        conv((h - shrink) * (w - shrink), f, (h - 2 * shrink) * (w - 2 * shrink), f)
        h, w, chans = h - 2 * shrink, w - 2 * shrink, f
        if level < spec.depth:
            sizes.append((h, w, f))
            live_skips += h * w * f
            step(h * w, f, (h // 2) * (w // 2), f)
            h, w = h // 2, w // 2
    for sh, sw, f in reversed(sizes):
        step(h * w, chans, 4 * h * w, f)
        h, w = 2 * h, 2 * w
        live_skips -= sh * sw * f
        step(h * w, f + f, h * w, 2 * f)  # crop + concat
        conv(h * w, 2 * f, (h - shrink) * (w - shrink), f)
        conv((h - shrink) * (w - shrink), f, (h - 2 * shrink) * (w - 2 * shrink), f)
        h, w, chans = h - 2 * shrink, w - 2 * shrink, f
    return int(4 * batch * peak * RUNTIME_FACTORS[runtime])


def tile_flops(spec: NetworkSpec, tile_in: tuple[int, int]) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass over ``tile_in``.

    Counts the 3x3 and 1x1 convolutions and the 2x2 up-convolutions, which are nearly all
    of the work; the automatic tile choice compares tile sizes with it.
    """
    h, w = tile_in
    chans, flops = spec.input_channels, 0.0
    shrink = 0 if spec.padded_halo is not None else 2
    skips = []
    for level in range(spec.depth + 1):
        f = spec.base_filters * 2**level
        flops += 18 * chans * f * (h - shrink) * (w - shrink)
        flops += 18 * f * f * (h - 2 * shrink) * (w - 2 * shrink)
        h, w, chans = h - 2 * shrink, w - 2 * shrink, f
        if level < spec.depth:
            skips.append(f)
            h, w = h // 2, w // 2
    for f in reversed(skips):
        flops += 8 * chans * f * h * w  # 2x2 stride-2 up-convolution: 4 outputs per input
        h, w = 2 * h, 2 * w
        flops += 18 * 2 * f * f * (h - shrink) * (w - shrink)
        flops += 18 * f * f * (h - 2 * shrink) * (w - 2 * shrink)
        h, w, chans = h - 2 * shrink, w - 2 * shrink, f
    return flops + 2 * chans * spec.num_classes * h * w


def parse_bytes(text: str | int) -> int:
    """Read a memory size: plain bytes, or a number with a unit (``"300MB"``, ``"1.5GiB"``).

    kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024 (case-insensitive).
    Anything else, or a size below one byte, is a one-line ValueError.
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        raw = str(text).strip().lower().replace(" ", "")
        number = raw.rstrip("kmgtib")
        value, unit = (float(number) if _is_number(number) else -1.0), raw[len(number) :]
    if unit not in _UNITS or not value * _UNITS[unit] >= 1 or value == float("inf"):
        raise ValueError(
            f"cannot read the memory size {text!r}; give bytes or a number with a unit, "
            "e.g. 300MB, 2GB or 1.5GiB"
        )
    return int(value * _UNITS[unit])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unix systems: free physical pages
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def default_memory_budget(available: int | None = None) -> int:
    """Return the activation budget used when none is given: 1/4 of the available memory.

    Kept between 256 MiB and 8 GiB; :data:`DEFAULT_MEMORY_BUDGET` where the available
    memory cannot be read.  ``available`` replaces the measurement (for tests).
    """
    if available is None:
        available = _available_memory()
    if not available:
        return DEFAULT_MEMORY_BUDGET
    low, high = _BUDGET_LIMITS
    # whole multiples of the floor, so that the tiles do not change with every few MB
    share = int(available * _AVAILABLE_SHARE) // low * low
    return int(min(max(share, low), high))


def axis_origins(size: int, tile_out: int, step: int) -> tuple[int, ...]:
    """Output-tile origins covering ``[0, size)``: multiples of ``step``, last one flush.

    The stride is the largest multiple of ``step`` not above ``tile_out``; the last tile is
    moved back to the smallest aligned origin that still reaches the end, which avoids
    computing far beyond the image.
    """
    if tile_out >= size:
        return (0,)
    stride = tile_out // step * step
    if stride <= 0:
        raise ValueError(
            f"output tiles of {tile_out} px are smaller than the network's "
            f"alignment of {step} px; use a larger tile size"
        )
    origins = list(range(0, size - tile_out, stride))
    last = -(-(size - tile_out) // step) * step
    return (*origins, last)


@dataclass(frozen=True)
class Tile:
    """One tile of a plan: where its input starts and which output rows/columns it owns."""

    index: int
    input_start: tuple[int, int]
    output_start: tuple[int, int]
    owned: tuple[slice, slice]

    @property
    def owned_in_tile(self) -> tuple[slice, slice]:
        """The owned region in the tile's own output coordinates."""
        return tuple(  # type: ignore[return-value]
            slice(s.start - o, s.stop - o) for s, o in zip(self.owned, self.output_start)
        )


@dataclass(frozen=True)
class TilePlan:
    """How a ``(Y, X)`` image is covered by tiles.

    Attributes
    ----------
    shape : tuple of int
        Image size ``(Y, X)``.
    tile_in, tile_out : tuple of int
        Input and output tile sizes ``(Y, X)``.
    halo : int
        Context on each side (px).
    origins : tuple of tuple of int
        Output origins along Y and along X.
    batch_size : int
        Tiles per network call.
    memory_per_batch : int
        Estimated activation bytes of one batch.
    memory_budget : int, optional
        The budget the plan was made for (bytes; not compared: plans with the same tiles
        are equal).
    chosen_by : str
        How the tile size was chosen: ``"flops"`` (automatic, least computation),
        ``"timings"`` (automatic, least time measured on this machine, see
        :mod:`napari_tiled_unet.core.autotune`), ``"request"`` or ``"model"`` (a model of
        one input size).  Not compared.
    runtime : str
        The runtime whose memory overhead ``memory_per_batch`` counts (see
        :func:`activation_bytes`; not compared).
    """

    shape: tuple[int, int]
    tile_in: tuple[int, int]
    tile_out: tuple[int, int]
    halo: int
    origins: tuple[tuple[int, ...], tuple[int, ...]]
    batch_size: int
    memory_per_batch: int
    memory_budget: int | None = dataclasses.field(default=None, compare=False)
    chosen_by: str = dataclasses.field(default="flops", compare=False)
    runtime: str = dataclasses.field(default="tensorflow", compare=False)

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.origins[0]) * len(self.origins[1])

    def with_batch_size(self, batch_size: int) -> TilePlan:
        """Return the same tiles, ``batch_size`` of them per network call."""
        per_tile = self.memory_per_batch // max(self.batch_size, 1)
        return dataclasses.replace(
            self, batch_size=int(batch_size), memory_per_batch=per_tile * int(batch_size)
        )

    def tiles(self) -> Iterator[Tile]:
        """Yield the tiles in row-major order."""
        ys, xs = self.origins
        index = 0
        for iy, y in enumerate(ys):
            y_end = ys[iy + 1] if iy + 1 < len(ys) else self.shape[0]
            for ix, x in enumerate(xs):
                x_end = xs[ix + 1] if ix + 1 < len(xs) else self.shape[1]
                yield Tile(
                    index,
                    (y - self.halo, x - self.halo),
                    (y, x),
                    (slice(y, y_end), slice(x, x_end)),
                )
                index += 1

    def batches(self) -> Iterator[list[Tile]]:
        """Yield the tiles grouped in batches of ``batch_size``."""
        batch: list[Tile] = []
        for tile in self.tiles():
            batch.append(tile)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def reflect_indices(indices: np.ndarray, size: int) -> np.ndarray:
    """Map any integer coordinates into ``[0, size)`` by mirroring at the borders.

    Same convention as ``np.pad(mode="reflect")`` (the edge pixel is not repeated), applied
    as often as needed, so the context of tiles larger than the image is well defined.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if size == 1:
        return np.zeros_like(indices)
    period = 2 * (size - 1)
    folded = np.mod(indices, period)
    return np.where(folded >= size, period - folded, folded)


def cut_tile(plane: np.ndarray, tile: Tile, plan: TilePlan) -> np.ndarray:
    """Cut the input of ``tile`` (with its mirrored context) from a ``(Y, X, C)`` plane."""
    ys = reflect_indices(
        np.arange(tile.input_start[0], tile.input_start[0] + plan.tile_in[0]), plane.shape[0]
    )
    xs = reflect_indices(
        np.arange(tile.input_start[1], tile.input_start[1] + plan.tile_in[1]), plane.shape[1]
    )
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    # Read only the bounding box (cheap for memory-mapped or lazy arrays), then mirror.
    box = np.asarray(plane[y0:y1, x0:x1])
    return box[np.ix_(ys - y0, xs - x0)]


def _tile_sizes_from_request(
    tile_size: int | tuple[int, int], spec: NetworkSpec
) -> tuple[int, int]:
    sizes = [tile_size, tile_size] if isinstance(tile_size, (int, np.integer)) else list(tile_size)
    if len(sizes) != 2 or any(int(s) <= 0 for s in sizes):
        raise ValueError(f"tile_size must be a positive int or a (Y, X) pair, got {tile_size!r}")
    return (
        spec.nearest_valid_input_size(int(sizes[0]), warn=True),
        spec.nearest_valid_input_size(int(sizes[1]), warn=True),
    )


def _explicit_tile_sizes(
    tile_size: int | tuple[int, int], spec: NetworkSpec, cover: tuple[int, int]
) -> tuple[int, int]:
    """Round a requested size to valid, at least one alignment step of output, at most cover."""
    requested = _tile_sizes_from_request(tile_size, spec)
    minimum = spec.smallest_input_for_output(spec.alignment)
    sizes = tuple(min(max(r, minimum), c) for r, c in zip(requested, cover))
    if any(s > r for s, r in zip(sizes, requested)):
        warnings.warn(
            f"tile size {requested} gives output tiles smaller than the network's "
            f"alignment of {spec.alignment} px; using {sizes}",
            UserWarning,
            stacklevel=3,
        )
    return sizes  # type: ignore[return-value]


def _auto_tile_sizes(
    spec: NetworkSpec,
    shape: tuple[int, int],
    cover: tuple[int, int],
    budget: int,
    timings: Any = None,
    runtime: str = "tensorflow",
) -> tuple[int, int]:
    """Return the tile that covers ``shape`` with the least work within ``budget`` bytes.

    Candidates are square (clamped to the image's cover) and their activations must fit
    both the budget and the size beyond which TensorFlow's CPU convolutions slow down; the
    work of a cover is its number of tiles times the FLOPs of one tile plus a fixed cost per
    call.  Larger tiles waste less on halos, but a tile larger than needed computes pixels
    outside the image: e.g. a 2048 px image is covered by 2 x 2 tiles of 1028 px output
    rather than by 3 x 3 of 708 px or one huge call.  Ties go to the larger tile.

    With ``timings`` (:class:`~napari_tiled_unet.core.timings.TileTimings` of this
    machine), the work of a cover is its number of tiles times the measured seconds of one
    call, and the largest tile timed takes the place of the slow-down size.
    """
    limit = budget if timings is not None else min(budget, _FAST_CALL_BYTES)
    smallest = spec.smallest_input_for_output(spec.alignment)
    best: tuple[float, tuple[int, int]] | None = None
    size = smallest
    while True:
        tile = (min(size, cover[0]), min(size, cover[1]))
        if best is not None and activation_bytes(spec, tile, runtime=runtime) > limit:
            break
        seconds = None if timings is None else timings.call_seconds(spec, tile)
        if best is not None and timings is not None and seconds is None:
            break  # larger than any tile timed here
        out_y, out_x = spec.output_size(tile[0]), spec.output_size(tile[1])
        if out_y is not None and out_x is not None:
            n_tiles = len(axis_origins(shape[0], out_y, spec.alignment)) * len(
                axis_origins(shape[1], out_x, spec.alignment)
            )
            if seconds is not None:
                work = n_tiles * seconds
            else:
                work = n_tiles * (tile_flops(spec, tile) + _CALL_OVERHEAD_FLOPS)
            if best is None or work <= best[0]:
                best = (work, tile)
        if size >= max(cover):
            break
        size += spec.alignment
    assert best is not None
    return best[1]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_options(tile_size: Any, memory_budget: Any, batch_size: Any) -> None:
    """One-line TypeError / ValueError for tiling options of the wrong type or range."""
    if tile_size is not None:
        pair = isinstance(tile_size, (tuple, list))
        sizes = tile_size if pair else (tile_size,)
        if len(sizes) != (2 if pair else 1) or not all(_is_int(s) for s in sizes):
            raise TypeError(
                f"tile_size must be an integer or a (Y, X) pair of integers, got {tile_size!r}"
            )
    for name, value in (("batch_size", batch_size), ("memory_budget", memory_budget)):
        if value is None or (name == "memory_budget" and isinstance(value, str)):
            continue
        if not _is_int(value):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}")


def plan_tiles(
    shape: tuple[int, int],
    spec: NetworkSpec,
    *,
    tile_size: int | tuple[int, int] | None = None,
    memory_budget: int | str | None = None,
    batch_size: int | None = None,
    timings: Any = None,
    runtime: str = "tensorflow",
) -> TilePlan:
    """Plan the overlap-tile cover of a ``(Y, X)`` image.

    Parameters
    ----------
    shape : tuple of int
        Image size ``(Y, X)``.
    spec : NetworkSpec
        The network's geometry.
    tile_size : int or (int, int), optional
        Input tile size; an invalid size is rounded to the nearest valid one with a warning.
        None chooses the tile that covers the image with the least work (fewest FLOPs,
        calls of at most 2 GiB of activations) within ``memory_budget``.  A model
        with a fixed input size always uses that size.
    memory_budget : int or str, optional
        Activation memory allowed per network call: bytes, or text such as ``"300MB"``
        (see :func:`parse_bytes`); default :func:`default_memory_budget`.
    batch_size : int, optional
        Tiles per call; None fills the memory budget (at most 16).
    timings : TileTimings, optional
        Tile timings of this network on this machine
        (:func:`~napari_tiled_unet.core.timings.cached_timings`): the automatic tile is
        then the one whose cover takes the least measured time.
    runtime : {"tensorflow", "onnxruntime"}
        What runs the network (ONNX Runtime for int8), for the memory estimate.

    Returns
    -------
    TilePlan
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"expected a non-empty (Y, X) image shape, got {tuple(shape)}")
    _check_options(tile_size, memory_budget, batch_size)
    budget = default_memory_budget() if memory_budget is None else parse_bytes(memory_budget)
    cover = (
        spec.smallest_input_for_output(shape[0]),
        spec.smallest_input_for_output(shape[1]),
    )
    tile_in: tuple[int, int]
    if spec.fixed_input_size is not None:
        fixed = spec.fixed_input_size
        tile_in, chosen_by = (int(fixed[0]), int(fixed[1])), "model"
    elif tile_size is not None:
        tile_in, chosen_by = _explicit_tile_sizes(tile_size, spec, cover), "request"
    else:
        size = (int(shape[0]), int(shape[1]))
        tile_in = _auto_tile_sizes(spec, size, cover, budget, timings=timings, runtime=runtime)
        chosen_by = "flops" if timings is None else "timings"
    out_y, out_x = (spec.output_size(t) for t in tile_in)
    if out_y is None or out_x is None:
        raise ValueError(f"tile input {tile_in} is not valid for a depth-{spec.depth} U-Net")
    origins = (
        axis_origins(shape[0], out_y, spec.alignment),
        axis_origins(shape[1], out_x, spec.alignment),
    )
    n_tiles = len(origins[0]) * len(origins[1])
    per_tile = activation_bytes(spec, tile_in, runtime=runtime)
    if batch_size is None:
        fast = min(budget, _FAST_CALL_BYTES)
        batch_size = max(1, min(n_tiles, _MAX_BATCH, fast // max(per_tile, 1)))
    return TilePlan(
        (int(shape[0]), int(shape[1])),
        tile_in,
        (out_y, out_x),
        spec.halo,
        origins,
        int(batch_size),
        per_tile * int(batch_size),
        budget,
        chosen_by=chosen_by,
        runtime=runtime,
    )
