"""int8 inference: the U-Net quantised with ONNX Runtime on the images being segmented.

:func:`int8_model` turns a float32 U-Net into one that runs in int8, for the tiles of one
run:

1. Tiles of the planned tile size (at most :data:`CALIBRATION_TILE` px) are cut at
   spread-out places of the run's planes,
   normalised as the engine normalises them: two thirds calibrate, one third is held out.
2. The network is exported to ONNX and quantised statically (QDQ format, uint8 activations,
   int8 weights per output channel, min/max calibration on the calibration tiles).  The 1x1
   classifier, the softmax and everything after it stay float32.
3. The gate: float32 and int8 run on the held-out tiles.  int8 is used when their labels
   agree on at least :data:`MIN_AGREEMENT` of the pixels and, for models with a border
   class, the border class's IoU is at least :data:`MIN_BORDER_IOU`, and int8 runs a tile
   of the run's size at least :data:`MIN_SPEEDUP` times as fast as float32; else the run
   uses bfloat16 (where the machine runs it natively) or float32, with one warning.  (ONNX
   Runtime's cost per operator makes int8 slower than TensorFlow's float32 for small
   networks such as the bundled 16-filter one: such a run would gain nothing from int8.)

The quantised model is cached (:func:`~napari_tiled_unet.core.cache.cache_dir`) under a
hash of the weights, the calibration tiles and the calibration tile size, and its gate
result next to it per tile size of the run, so a second run on the same data neither
calibrates nor measures again.  Why these settings: see the README's precision section and
``benchmarks/bench_precision_agreement.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.core.normalize import network_input
from napari_tiled_unet.core.precision import PrecisionNote, PrecisionWarning
from napari_tiled_unet.core.tiling import Tile, TilePlan, cut_tile, plan_tiles

__all__ = [
    "CALIBRATION_TILE",
    "CALIBRATION_TILES",
    "HELD_OUT_TILES",
    "MIN_AGREEMENT",
    "MIN_BORDER_IOU",
    "Int8Gate",
    "int8_model",
    "sample_tiles",
]

#: Fraction of held-out pixels whose int8 label must equal the float32 label.
MIN_AGREEMENT = 0.995
#: IoU of the border class between int8 and float32 labels that 3-class models must reach.
#: A border is one or two pixels wide, so a border that moves by half a pixel loses much of
#: its IoU while it still separates the same objects; 0.90 lets such shifts pass and stops
#: borders that break up or vanish.
MIN_BORDER_IOU = 0.90
#: int8 must run a tile of the run's size at least this much faster than float32 to be used.
MIN_SPEEDUP = 1.0
#: Tiles that calibrate the activation ranges, and tiles that judge the result.
CALIBRATION_TILES, HELD_OUT_TILES = 8, 4
#: Largest calibration and held-out tile (input px; larger planned tiles are cut smaller on
#: the same grid).  ONNX Runtime's calibrator keeps every intermediate tensor of every
#: calibration tile: for the paper-size network's 1212 px tiles (about 2 GB of activations
#: each) that ran out of 24 GB.  The ranges it measures do not depend on the tile size.
CALIBRATION_TILE = 572
#: Calibration of the activation ranges (ONNX Runtime's ``CalibrationMethod``).  On the bundled
#: model and the nuclei sample MinMax, Percentile and Entropy agree with float32 within 0.02 %
#: of the pixels; MinMax calibrates about five times faster.
CALIBRATION_METHOD = "MinMax"
_FORMAT = 1  # of the cached files: a new number makes new ones
_SESSIONS: dict[str, Any] = {}  # one ONNX Runtime session per (model, calibration)


@dataclass(frozen=True)
class Int8Gate:
    """How int8 compared with float32 on the held-out tiles of a run.

    Attributes
    ----------
    agreement : float
        Fraction of held-out pixels with the same label in int8 as in float32.
    border_iou : float or None
        IoU of the border class between the two (None: the model has no border class).
    held_out : int
        Held-out tiles compared.
    speedup : float
        float32 time over int8 time, on a tile of the run's size (on the held-out tiles when
        the run's tiles are not larger).
    method : str
        Calibration method.
    key : str
        Hash of the weights, calibration tiles and tile size (the cached model's name).
    used : str
        The precision the run uses: ``"int8"`` when the gate passed and int8 was faster
        (:attr:`faster`), else the fallback.
    cached : bool
        The quantised model and this result came from the cache.
    """

    agreement: float
    border_iou: float | None
    held_out: int
    speedup: float
    method: str
    key: str
    used: str = "int8"
    cached: bool = False

    @property
    def passed(self) -> bool:
        """Whether int8 meets :data:`MIN_AGREEMENT` and :data:`MIN_BORDER_IOU`."""
        border_ok = self.border_iou is None or self.border_iou >= MIN_BORDER_IOU
        return self.agreement >= MIN_AGREEMENT and border_ok

    @property
    def faster(self) -> bool:
        """Whether int8 ran a tile of the run's size at least :data:`MIN_SPEEDUP` x as fast."""
        return self.speedup >= MIN_SPEEDUP

    def describe(self) -> str:
        """One line, e.g. ``99.71 % agreement with float32 on 4 held-out tiles, 2.9x faster``."""
        iou = "" if self.border_iou is None else f", border IoU {self.border_iou:.3f}"
        return (
            f"{100 * self.agreement:.2f} % agreement with float32 on {self.held_out} "
            f"held-out tiles{iou}, {_pace(self.speedup)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return what run records keep: the fields, ``passed`` and the one-line summary."""
        return {
            **dataclasses.asdict(self),
            "passed": self.passed,
            "faster": self.faster,
            "summary": self.describe(),
        }


def _pace(speedup: float) -> str:
    """``2.9x faster`` or ``1.2x slower`` (float32 time over int8 time ``speedup``)."""
    if speedup >= 1 or speedup <= 0:
        return f"{speedup:.1f}x faster"
    return f"{1 / speedup:.1f}x slower"


def _halton(index: int, base: int) -> float:
    """Return the ``index``-th number of the van der Corput sequence in ``base``, in [0, 1)."""
    value, fraction = 0.0, 1.0
    while index > 0:
        fraction /= base
        value += fraction * (index % base)
        index //= base
    return value


def sample_tiles(sources: Sequence[tuple[Any, Any]], plan: TilePlan, count: int) -> np.ndarray:
    """Cut ``count`` network inputs ``(count, *plan.tile_in, C)`` spread over ``sources``.

    ``sources`` are ``(plane, scale)`` pairs: a ``(Y, X, C)`` plane on the plan's grid and
    the normalisation applied as tiles are cut (None: the plane is normalised already), as
    the engine cuts its tiles.  Tile ``i`` comes from plane ``i % len(sources)``, at the
    ``i``-th point of a Halton sequence over the plane (mirrored past its edges), so tiles
    cover the planes evenly and none repeats another.
    """
    tiles = []
    for i in range(count):
        plane, scale = sources[i % len(sources)]
        starts = []
        for axis, base in ((0, 2), (1, 3)):
            out = plan.tile_out[axis]
            span = max(int(plane.shape[axis]) - out, out // 2)
            starts.append(int(_halton(i + 1, base) * span) - plan.halo)
        tile = Tile(i, (starts[0], starts[1]), (starts[0], starts[1]), (slice(0, 0),) * 2)
        tiles.append(network_input(cut_tile(plane, tile, plan)[None], scale)[0])
    return np.stack(tiles)


def _key(unet: Any, calibration: np.ndarray, tile_in: tuple[int, int]) -> str:
    import onnxruntime

    digest = hashlib.sha256(f"{_FORMAT} {onnxruntime.__version__} {tile_in}".encode())
    digest.update(CALIBRATION_METHOD.encode())
    for weight in unet.keras_model.get_weights():
        digest.update(str(weight.shape).encode())
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(calibration).tobytes())
    return digest.hexdigest()[:32]


def _float_tail(graph: Any) -> list[str]:
    """Names of the nodes that stay float32: the softmax (or sigmoid), its input's Conv, after."""
    producers = {out: node for node in graph.node for out in node.output}
    tail = [n for n in graph.node if n.op_type in ("Softmax", "Sigmoid")]
    names = {n.name for n in tail}
    for node in tail:
        before = producers.get(node.input[0])
        if before is not None and before.op_type == "Conv":
            names.add(before.name)
    outputs = {out for n in tail for out in n.output}
    for node in graph.node:  # in topological order: whatever reads the tail is tail
        if any(i in outputs for i in node.input):
            names.add(node.name)
            outputs.update(node.output)
    return sorted(names)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Keep the advice that the quantiser logs to the root logger out of the console."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(unet: Any, calibration: np.ndarray, target: Path, tile_in: tuple[int, int]) -> None:
    """Export ``unet`` to ONNX and write its int8 model, calibrated on ``calibration``."""
    import onnx
    from onnxruntime import quantization as q

    from napari_tiled_unet.core.cache import atomic_path
    from napari_tiled_unet.core.memory import release_memory
    from napari_tiled_unet.core.onnx_export import export_onnx

    class Tiles(q.CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self._next = iter([{name: tile[None]} for tile in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._next, None)

    spec = unet.spec
    # Keras needs one call before it exports; the graph takes any size, so the smallest
    # valid tile does (a 572 px call of the paper-size network alone holds 0.8 GB).
    size = spec.smallest_input_for_output(spec.alignment)
    build = tile_in if spec.fixed_input_size is not None else (size, size)
    with tempfile.TemporaryDirectory(prefix="napari-tiled-unet-int8-") as tmp:
        source = Path(tmp) / "float32.onnx"
        export_onnx(unet.keras_model, source, input_size=build)
        graph = onnx.load(str(source)).graph
        name, keep_float = graph.input[0].name, _float_tail(graph)
        del graph  # the float32 weights: the quantiser loads its own copy
        try:
            with atomic_path(target) as part, _quiet_root_logger():
                q.quantize_static(
                    str(source),
                    str(part),
                    Tiles(name),
                    quant_format=q.QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    calibrate_method=getattr(q.CalibrationMethod, CALIBRATION_METHOD),
                    nodes_to_exclude=keep_float,
                )
        finally:
            release_memory()  # the calibrator's sessions and graph copies


def _labels_agree(int8: np.ndarray, float32: np.ndarray, names: Sequence[str]) -> tuple:
    a, b = np.argmax(int8, axis=-1), np.argmax(float32, axis=-1)
    agreement = float(np.mean(a == b))
    if len(names) != 3 or "border" not in names:
        return agreement, None
    k = list(names).index("border")
    union = int(np.sum((a == k) | (b == k)))
    return agreement, float(np.sum((a == k) & (b == k)) / union) if union else 1.0


def _timed(model: Any, tiles: np.ndarray) -> tuple[np.ndarray, float]:
    """Run ``tiles`` one by one after a warm-up call; return the outputs and the seconds."""
    model.predict_batch(tiles[:1])
    start = time.perf_counter()
    outputs = np.concatenate([model.predict_batch(t[None]) for t in tiles])
    return outputs, time.perf_counter() - start


def _measure(
    float32: Any, int8: Any, held_out: np.ndarray, key: str, tile_in: tuple[int, int]
) -> Int8Gate:
    """Agreement on the held-out tiles; the speed-up at the run's own tile size ``tile_in``.

    The speed of ONNX Runtime's int8 against TensorFlow's float32 depends on the tile size
    (the bundled model: about the same at 572 px, half as fast at 1116 px), so when the
    run's tiles are larger than the held-out ones, one tile of the run's size (the first
    held-out tile, mirrored out to that size) is timed in both after a warm-up call.
    """
    reference, seconds32 = _timed(float32, held_out)
    outputs, seconds8 = _timed(int8, held_out)
    agreement, border = _labels_agree(outputs, reference, float32.metadata.class_names)
    if tuple(tile_in) != held_out.shape[1:3]:
        extra = [(0, max(0, t - n)) for t, n in zip(tile_in, held_out.shape[1:3])]
        tile = np.pad(held_out[0], [*extra, (0, 0)], mode="symmetric")[: tile_in[0], : tile_in[1]]
        seconds32 = _timed(float32, tile[None])[1]
        seconds8 = _timed(int8, tile[None])[1]
    speedup = seconds32 / max(seconds8, 1e-9)
    return Int8Gate(agreement, border, len(held_out), speedup, CALIBRATION_METHOD, key)


def _read_gate(path: Path, key: str) -> Int8Gate | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(Int8Gate)}
        gate = Int8Gate(**{k: v for k, v in info.items() if k in fields})
    except (OSError, ValueError, TypeError):
        return None
    return dataclasses.replace(gate, cached=True) if gate.key == key else None


def _write_gate(path: Path, gate: Int8Gate) -> None:
    from napari_tiled_unet.core.cache import atomic_path

    with atomic_path(path) as part:
        part.write_text(json.dumps(gate.to_dict(), indent=2), encoding="utf-8")


def _session_call(path: Path, key: str) -> Any:
    from napari_tiled_unet.core.onnx_export import ort_session, session_call

    if key not in _SESSIONS:
        while len(_SESSIONS) >= 4:  # a long session of many images: keep the recent ones
            _SESSIONS.pop(next(iter(_SESSIONS)))
        _SESSIONS[key] = session_call(ort_session(path))
    return _SESSIONS[key]


def _fallback() -> str:
    from napari_tiled_unet.core.precision import native_bfloat16

    return "bfloat16" if native_bfloat16() else "float32"


def _calibration_plan(unet: Any, plan: TilePlan) -> TilePlan:
    """Return the run's plan, or one with tiles of at most :data:`CALIBRATION_TILE` px."""
    if max(plan.tile_in) <= CALIBRATION_TILE or unet.spec.fixed_input_size is not None:
        return plan
    with warnings.catch_warnings():  # the size is rounded to a valid one: nothing to say
        warnings.simplefilter("ignore")
        return plan_tiles(plan.shape, unet.spec, tile_size=CALIBRATION_TILE, batch_size=1)


def int8_model(unet: Any, sources: Sequence[tuple[Any, Any]], plan: TilePlan) -> Any:
    """Return ``unet`` calibrated in int8 on ``sources`` and checked by the gate.

    Parameters
    ----------
    unet : UNetModel
        A float32 model, or its (not yet calibrated) int8 variant; its test-time augmentation
        is kept.
    sources : sequence of (plane, scale)
        Planes of the run on the plan's grid, with the normalisation to apply as tiles are
        cut (see :func:`sample_tiles`).
    plan : TilePlan
        The run's tile plan (its tile size is the calibration's).

    Returns
    -------
    UNetModel
        The int8 model, or the fallback model (bfloat16 or float32) when the gate fails;
        either way ``.int8`` holds the :class:`Int8Gate`.  The outcome is said once, as a
        :class:`~napari_tiled_unet.core.precision.PrecisionNote` (passed) or a
        :class:`~napari_tiled_unet.core.precision.PrecisionWarning` (failed).
    """
    from napari_tiled_unet.core.cache import cache_dir
    from napari_tiled_unet.core.model.types import UNetModel

    float32 = unet._variants.get(("float32", ()))  # the model the int8 variant came from
    if float32 is None:
        float32 = unet.variant(tta=()) if unet.precision == "float32" else None
    if float32 is None:
        float32 = UNetModel(unet.keras_model, unet.metadata, unet.source)
    tile_in = plan.tile_in  # the run's tiles, at which int8's speed is measured
    plan = _calibration_plan(float32, plan)
    tiles = sample_tiles(sources, plan, CALIBRATION_TILES + HELD_OUT_TILES)
    held = np.arange(len(tiles)) % 3 == 2  # every third tile judges, the others calibrate
    key = _key(float32, tiles[~held], plan.tile_in)
    folder = cache_dir("int8")
    model_path = folder / f"{key}.onnx"
    # The gate's speed-up is that of the run's tile size: one result per tile size.
    gate_path = folder / f"{key}-{tile_in[0]}x{tile_in[1]}.json"
    cached = model_path.exists()
    if not cached:
        _quantize(float32, tiles[~held], model_path, plan.tile_in)
    int8 = UNetModel(unet.keras_model, unet.metadata, unet.source, "int8", (), _call=None)
    int8._call = _session_call(model_path, key)
    gate = _read_gate(gate_path, key) if cached else None
    if gate is None:
        gate = _measure(float32, int8, tiles[held], key, tile_in)
        _write_gate(gate_path, gate)
    if gate.passed and gate.faster:
        warnings.warn(f"int8: {gate.describe()}", PrecisionNote, stacklevel=3)
        model = int8.variant(precision="int8", tta=unet.tta)
    elif gate.passed:
        gate = dataclasses.replace(gate, used=_fallback())
        warnings.warn(
            f"int8 is not faster than float32 for this model here ({gate.describe()}); "
            f"using {gate.used}",
            PrecisionWarning,
            stacklevel=3,
        )
        model = float32.variant(precision=gate.used, tta=unet.tta)
    else:
        gate = dataclasses.replace(gate, used=_fallback())
        warnings.warn(
            f"int8 does not agree well enough with float32 ({gate.describe()}; needs "
            f"{100 * MIN_AGREEMENT:.1f} % and border IoU {MIN_BORDER_IOU:.2f}); "
            f"using {gate.used}",
            PrecisionWarning,
            stacklevel=3,
        )
        model = float32.variant(precision=gate.used, tta=unet.tta)
    # a copy that carries the gate: the float32 model itself may serve other runs
    return dataclasses.replace(model, int8=gate)
