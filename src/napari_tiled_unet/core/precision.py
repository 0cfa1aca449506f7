"""Reduced-precision inference: which precision a machine runs well, and the model in it.

``"float32"`` is the default.  ``"bfloat16"`` runs the network's convolutions in bfloat16 on
CPUs with native bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``) and on GPUs;
``"float16"`` on GPUs only.  Elsewhere the request falls back to float32 with one warning,
because emulated half precision is slower than float32.  The softmax and everything after
it stay in float32, so probabilities keep their full resolution.

``"int8"`` runs the network through ONNX Runtime, quantised on the images being segmented
and used only where its labels agree with float32's (:mod:`napari_tiled_unet.core.int8`);
it needs the ``onnx`` extra, without which the run uses float32 with one warning.

Keras is imported only when a model is converted.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from functools import cache
from typing import Any

__all__ = [
    "ONNX_HINT",
    "PRECISIONS",
    "PrecisionNote",
    "PrecisionWarning",
    "cast_keras_model",
    "check_precision",
    "missing_onnx",
    "cpu_has_bf16",
    "effective_precision",
    "native_bfloat16",
]

#: The precisions a run can ask for.
PRECISIONS = ("float32", "bfloat16", "float16", "int8")
# Keras dtype policies: float32 variables, computation in the reduced type.
_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# Layers from which on everything stays float32 (the class probabilities and their crops).
_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


#: How to install what ONNX export and int8 inference need.
ONNX_HINT = 'pip install "napari-tiled-unet[onnx]"'
_MODULES = ("onnxruntime", "onnx", "tf2onnx")


def missing_onnx() -> str | None:
    """Return the first module of the ``onnx`` extra that cannot be imported (None: all can).

    ``tf2onnx`` is only looked up, not imported: it imports TensorFlow itself, which must
    come through :func:`~napari_tiled_unet.core._keras.get_keras` (loaded any other way,
    TensorFlow's LLVM clashes with the one of Mesa's OpenGL drivers in napari and the
    process aborts at exit).
    """
    for name in _MODULES:
        if name == "tf2onnx":
            if importlib.util.find_spec(name) is None:
                return name
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


class PrecisionWarning(UserWarning):
    """A requested precision is not supported here; the run uses another one."""


class PrecisionNote(UserWarning):
    """Not a problem: what a reduced precision measured, said once per run (e.g. int8's gate)."""


def check_precision(precision: Any) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS` (one-line ValueError if not)."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}; "
            "use float32 unless the machine has bfloat16 (recent CPUs, GPUs) or float16 (GPUs), "
            "or int8 (CPUs, with the onnx extra)"
        )
    return str(precision)


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has native bfloat16 matrix instructions (Linux ``/proc/cpuinfo``).

    ``cpuinfo`` is the text to read instead of the file (for tests).  Other systems: False.
    """
    if cpuinfo is None:
        if not sys.platform.startswith("linux"):
            return False
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


@cache
def _has_gpu() -> bool:
    from napari_tiled_unet.core._keras import get_tf

    return bool(get_tf().config.list_physical_devices("GPU"))


def native_bfloat16() -> bool:
    """Whether this machine runs bfloat16 natively (a GPU, or a CPU with bfloat16 instructions)."""
    return cpu_has_bf16() or _has_gpu()


def effective_precision(precision: str) -> str:
    """Return the precision that a run asking for ``precision`` uses on this machine.

    A reduced precision the hardware does not run natively gives float32 and one
    :class:`PrecisionWarning` that says why; so does int8 without ONNX Runtime (the
    ``onnx`` extra).  Whether int8 is then used is decided on the images (its gate).
    """
    precision = check_precision(precision)
    if precision == "float32":
        return precision
    if precision == "int8":
        missing = missing_onnx()
        if missing is None:
            return precision
        warnings.warn(
            f"precision int8 needs {missing}, which is not installed; using float32 "
            f"(install it with: {ONNX_HINT})",
            PrecisionWarning,
            stacklevel=2,
        )
        return "float32"
    if _has_gpu() or (precision == "bfloat16" and cpu_has_bf16()):
        return precision
    need = (
        "a GPU or a CPU with avx512_bf16/amx_bf16 instructions"
        if precision == "bfloat16"
        else "a GPU"
    )
    warnings.warn(
        f"precision {precision} needs {need}, which this machine lacks; using float32",
        PrecisionWarning,
        stacklevel=2,
    )
    return "float32"


def _keeps_float32(layer: Any) -> bool:
    config = layer.get_config()
    name = type(layer).__name__.lower()
    activation = config.get("activation")
    return name in ("softmax", "sigmoid") or activation in _OUTPUT_ACTIVATIONS


def _is_classifier(layer: Any) -> bool:
    config = layer.get_config()
    return type(layer).__name__ == "Conv2D" and tuple(config.get("kernel_size", ())) == (1, 1)


def cast_keras_model(keras_model: Any, precision: str) -> Any:
    """Rebuild ``keras_model`` with its layers computing in ``precision``; same weights.

    Every layer before the first softmax (or sigmoid) output gets the mixed policy of
    ``precision`` (float32 weights, reduced-precision arithmetic); that layer, all after it
    and a 1x1 classifier right before it stay float32.  ``"float32"`` returns the model itself.
    """
    precision = check_precision(precision)
    if precision == "float32":
        return keras_model
    if precision not in _POLICIES:
        raise ValueError(
            f"a Keras model cannot be rebuilt in {precision}; int8 models come from "
            "napari_tiled_unet.core.int8.int8_model"
        )
    from napari_tiled_unet.core._keras import get_keras

    keras = get_keras()
    layers = list(keras_model.layers)  # in the order they run
    first = next((i for i, layer in enumerate(layers) if _keeps_float32(layer)), len(layers))
    if 0 < first < len(layers) and _is_classifier(layers[first - 1]):
        first -= 1  # the 1x1 logits: cheap, and bfloat16 logits would blur near-ties
    tail = {layer.name for layer in layers[first:]}

    def clone(layer: Any) -> Any:
        policy = "float32" if layer.name in tail else _POLICIES[precision]
        return type(layer).from_config({**layer.get_config(), "dtype": policy})

    try:
        cast = keras.models.clone_model(keras_model, clone_function=clone)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise ValueError(
            f"this model cannot be rebuilt in {precision} ({type(exc).__name__}); "
            "use precision float32"
        ) from exc
    cast.set_weights(keras_model.get_weights())
    return cast
