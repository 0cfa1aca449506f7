"""Keras to ONNX, and ONNX Runtime sessions (the optional ``onnx`` extra, imported lazily).

:func:`export_onnx` writes a U-Net as an ONNX graph that takes the engine's ``(B, Y, X, C)``
float32 tiles with any batch and tile size; :func:`ort_session` opens a graph for inference
on the CPU, on as many threads as the network's TensorFlow operations use.  Nothing here
imports ONNX, ONNX Runtime or the converter until a function needs them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.core.precision import ONNX_HINT, missing_onnx

__all__ = [
    "ONNX_HINT",
    "export_onnx",
    "missing_onnx",
    "ort_session",
    "ort_threads",
    "session_call",
]

#: Settings of :class:`onnxruntime.SessionOptions` for the sessions :func:`ort_session` opens.
SESSION_OPTIONS: dict[str, Any] = {}


def export_onnx(
    keras_model: Any, path: str | os.PathLike[str], *, input_size: tuple[int, int]
) -> int:
    """Write ``keras_model`` as ONNX to ``path``; return the graph's ONNX opset.

    The graph's input is named after the model's input and has dynamic batch, height and
    width (unless the model takes one size only); ``input_size`` is a valid ``(Y, X)`` tile
    size of the network, for the one call that Keras needs before it exports a model.  The
    converter's graph copies are freed before this returns
    (:func:`~napari_tiled_unet.core.memory.release_memory`); ``keras_model`` is left as it is.
    """
    from napari_tiled_unet.core.memory import release_memory

    try:
        _convert(keras_model, path, input_size)
    finally:
        release_memory()
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))


def _convert(keras_model: Any, path: str | os.PathLike[str], input_size: tuple[int, int]) -> None:
    from napari_tiled_unet.core.model.stock import to_stock_keras

    model = to_stock_keras(keras_model)
    channels = int(model.inputs[0].shape[-1])
    model(np.zeros((1, *input_size, channels), np.float32), training=False)
    with warnings.catch_warnings():  # the converter's numpy deprecation notes
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            with _optimisers_in_place():
                model.export(str(path), format="onnx", verbose=False)
        except Exception:  # an optimiser failed on the graph itself: the converter's default
            model.export(str(path), format="onnx", verbose=False)


@contextlib.contextmanager
def _optimisers_in_place() -> Iterator[None]:
    """Let tf2onnx optimise the ONNX graph itself instead of a deep copy per optimiser.

    By default tf2onnx copies the whole graph, weights included, before each of its dozen
    optimisers (three rounds), so that one that fails can be skipped; the discarded copies
    are reference cycles that pile up: converting the paper-size U-Net peaked at 9.3 GB in
    the optimisers, 5.8 GB without the copies, and took 32 s instead of 13 s
    (``benchmarks/bench_int8_memory.py``).  Its ``TF2ONNX_CATCH_ERRORS`` variable turns the
    copies off (tf2onnx 1.17 reads only whether it is set); a failure then fails the
    conversion, which :func:`export_onnx` repeats the default way.
    """
    name = "TF2ONNX_CATCH_ERRORS"
    before = os.environ.get(name)
    os.environ[name] = "FALSE"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def ort_threads() -> int:
    """Threads within one ONNX Runtime operation: TensorFlow's setting, else all cores."""
    import sys

    if "tensorflow" in sys.modules:
        from napari_tiled_unet.core._keras import get_tf

        threads = int(get_tf().config.threading.get_intra_op_parallelism_threads())
        if threads > 0:
            return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ort_session(path: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """Open the ONNX graph at ``path`` for inference on the CPU (``threads`` within ops)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or ort_threads())
    options.inter_op_num_threads = 1  # the U-Net is a chain: nothing runs side by side
    # Fatal messages only: no notes about unused initialisers, and no error line on the
    # console for a failed allocation, which comes back as an exception and is retried with
    # smaller calls (napari_tiled_unet.core.memory) with one warning of its own.
    options.log_severity_level = 4
    # Without its arena ONNX Runtime hands each tensor back as soon as it is dead instead of
    # keeping the largest blocks for later calls: a cached int8 run of the paper-size U-Net
    # on 1024 x 1024 px peaked at 1832 MiB instead of 2225 MiB, 6.2 s instead of 5.9 s;
    # planning the memory pattern made no difference (benchmarks/bench_int8_memory.py).
    options.enable_cpu_mem_arena = False
    for name, value in SESSION_OPTIONS.items():
        setattr(options, name, value)
    return ort.InferenceSession(str(Path(path)), options, providers=["CPUExecutionProvider"])


def session_call(session: Any) -> Any:
    """Return a function that runs ``session`` on a ``(B, Y, X, C)`` float32 batch."""
    name = session.get_inputs()[0].name

    def call(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return call
