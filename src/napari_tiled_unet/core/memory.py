"""Network calls that survive running out of memory: smaller batches, then smaller tiles.

The tile plan is made from an estimate (:func:`~napari_tiled_unet.core.tiling.activation_bytes`);
when a call still runs out of memory (TensorFlow's ``ResourceExhaustedError``, an ONNX
Runtime allocation failure of an int8 model, or Python's ``MemoryError``),
:func:`predict_tiles` retries with half the batch, then computes each tile through smaller
sub-tiles (output halved each time, down to one alignment step).  Sub-tiles
start on the network's pooling grid, so a tile computed in pieces equals the tile computed
at once: the result does not change (beyond the float rounding that differs between batch
sizes, a few 1e-8), only the speed.  The first fallback of a model says so
in one :class:`OutOfMemoryWarning`; the smaller sizes are kept for the model's later calls.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import warnings
from typing import Any

import numpy as np

from napari_tiled_unet.core.normalize import network_input
from napari_tiled_unet.core.tiling import Tile, TilePlan, axis_origins, cut_tile

__all__ = [
    "OutOfMemoryWarning",
    "fallback_of",
    "is_out_of_memory",
    "predict_tiles",
    "release_memory",
]


class OutOfMemoryWarning(UserWarning):
    """A network call ran out of memory and the run continues with smaller calls."""


#: What ONNX Runtime's errors say when an allocation fails: its arena ("Failed to allocate
#: memory for requested buffer of size ...", a ``Fail``) or, with the arena off, the C++
#: allocator (``std::bad_alloc``, a ``RuntimeException``).
_ORT_ALLOCATION_FAILURES = ("failed to allocate memory", "bad_alloc")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that memory ran out.

    Python's MemoryError, TensorFlow's ResourceExhaustedError, and ONNX Runtime errors
    (int8) whose message tells of a failed allocation.
    """
    if isinstance(exc, MemoryError) or any(
        c.__name__ == "ResourceExhaustedError" for c in type(exc).__mro__
    ):
        return True
    if not type(exc).__module__.startswith("onnxruntime"):
        return False
    message = str(exc).lower()
    return any(text in message for text in _ORT_ALLOCATION_FAILURES)


def release_memory() -> None:
    """Free unreachable objects now and hand the freed heap back to the system.

    Converting a network (Keras to ONNX, quantising it) leaves copies of its graph in
    reference cycles, which Python's collector frees late, and glibc keeps freed memory for
    the process: after exporting the paper-size U-Net the process held 5.9 GB, 2.3 GB after a
    collection and 1.0 GB after ``malloc_trim`` (``benchmarks/bench_int8_memory.py``).
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass


def _limits(unet: Any, plan: TilePlan) -> dict[str, Any]:
    """Return the batch and (sub-)tile for calls of ``unet`` on ``plan``'s tiles.

    The plan's own sizes, or the smaller ones an earlier call on tiles of this size fell
    back to (kept in ``unet.memory_fallback`` once a call has run out of memory).
    """
    known = unet.memory_fallback.get(plan.tile_in)
    if known is None:
        return {"batch": plan.batch_size, "tile": plan.tile_in}
    return {"batch": min(known["batch"], plan.batch_size), "tile": known["tile"]}


def fallback_of(unet: Any, plan: TilePlan) -> dict[str, Any] | None:
    """Return what calls on ``plan``'s tiles fell back to (None: they ran as planned)."""
    limits = unet.memory_fallback.get(plan.tile_in)
    if limits is None:
        return None
    limits = {"batch": min(limits["batch"], plan.batch_size), "tile": limits["tile"]}
    if (limits["batch"], limits["tile"]) == (plan.batch_size, plan.tile_in):
        return None
    return {"batch_size": limits["batch"], "tile_in": list(limits["tile"])}


def _smaller(limits: dict[str, Any], spec: Any) -> bool:
    """Halve the batch, else the sub-tile's output; False when nothing is left to halve."""
    if limits["batch"] > 1:
        limits["batch"] //= 2
        return True
    if spec.fixed_input_size is not None:  # such a network takes no other tile size
        return False
    step = spec.alignment
    outputs = [spec.output_size(t) for t in limits["tile"]]
    halved = [max(step, o // 2 // step * step) for o in outputs]
    if halved == outputs:
        return False
    limits["tile"] = tuple(spec.smallest_input_for_output(o) for o in halved)
    return True


def _call(unet: Any, plane: Any, plan: TilePlan, tiles: list[Tile], scale: Any) -> np.ndarray:
    return unet.predict_batch(
        network_input(np.stack([cut_tile(plane, t, plan) for t in tiles]), scale)
    )


def _in_pieces(
    unet: Any, plane: Any, plan: TilePlan, tile: Tile, scale: Any, limits: dict[str, Any]
) -> np.ndarray:
    """One tile's output, computed through sub-tiles of input size ``limits["tile"]``."""
    spec = unet.spec
    sub_out = tuple(spec.output_size(t) for t in limits["tile"])
    oy, ox = (axis_origins(n, o, spec.alignment) for n, o in zip(plan.tile_out, sub_out))
    sub = TilePlan(plan.tile_out, limits["tile"], sub_out, plan.halo, (oy, ox), 1, 0)
    out = np.zeros((*plan.tile_out, spec.num_classes), np.float32)
    y0, x0 = tile.output_start
    pieces = [
        dataclasses.replace(t, input_start=(t.input_start[0] + y0, t.input_start[1] + x0))
        for t in sub.tiles()
    ]
    for start in range(0, len(pieces), limits["batch"]):
        group = pieces[start : start + limits["batch"]]
        for piece, result in zip(group, _call(unet, plane, sub, group, scale)):
            out[piece.owned] = result[piece.owned_in_tile]
    return out


def _run(
    unet: Any, plane: Any, plan: TilePlan, tiles: list[Tile], scale: Any, limits: dict[str, Any]
) -> np.ndarray:
    if limits["tile"] != plan.tile_in:
        return np.stack([_in_pieces(unet, plane, plan, t, scale, limits) for t in tiles])
    step = limits["batch"]
    parts = [
        _call(unet, plane, plan, tiles[i : i + step], scale) for i in range(0, len(tiles), step)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def predict_tiles(
    unet: Any, plane: Any, plan: TilePlan, tiles: list[Tile], *, scale: Any = None
) -> np.ndarray:
    """Network outputs ``(len(tiles), *plan.tile_out, classes)`` of ``tiles`` of ``plane``.

    Cuts each tile's input (mirrored at the border, normalised with ``scale``) and runs the
    network, falling back to smaller batches and tiles when memory runs out (see the module
    docstring).  Raises MemoryError with one line when even the smallest tile does not fit.
    """
    limits = _limits(unet, plan)
    while True:
        try:
            return _run(unet, plane, plan, tiles, scale, limits)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            before = (limits["batch"], limits["tile"])
            if not _smaller(limits, unet.spec):
                raise MemoryError(
                    f"out of memory even for one {limits['tile'][0]} px tile; close other "
                    "programs or use a machine with more memory"
                ) from exc
            unet.memory_fallback[plan.tile_in] = dict(limits)
            _say_once(unet, before, limits)


def _say_once(unet: Any, before: tuple[int, Any], limits: dict[str, Any]) -> None:
    if unet.memory_fallback.get("warned"):
        return
    unet.memory_fallback["warned"] = True
    batch, tile = before
    warnings.warn(
        f"out of memory with {batch} tile(s) of {tile[0]} x {tile[1]} px per network call; "
        f"continuing with {limits['batch']} of {limits['tile'][0]} x {limits['tile'][1]} px "
        "(smaller again if needed; the results are the same, only slower)",
        OutOfMemoryWarning,
        stacklevel=4,
    )
