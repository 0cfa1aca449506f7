"""Peak memory of an int8 run, phase by phase: export, calibration, gate, run.

The paper-size U-Net (31,030,658 parameters, random weights) segments a mosaic of the
bundled nuclei sample with ``precision="int8"``, in a fresh process with an empty cache
folder.  The process's peak resident memory (``VmHWM``) is reset at the start of each phase
(``/proc/self/clear_refs``, Linux) and read at its end, so every row is that phase's own
peak; "RSS after" is what the process still holds when the phase ends (graph copies that
stay alive show there).  Phases:

- export: Keras to ONNX through tf2onnx (the float32 graph written to a temporary file);
- calibration: ONNX Runtime's static quantisation on the calibration tiles;
- gate: opening the int8 session, float32 and int8 on the held-out tiles;
- run: the segmentation itself, once the int8 model is known;
- second run: the same call again in the same process (cache hit);
- cached run, new process: a fresh process whose cache already holds the quantised model.

``--options`` compares ONNX Runtime session settings (memory-pattern planning and the CPU
arena on or off) on the cached run, each in its own fresh process: peak RSS and seconds.

``--factor`` measures ONNX Runtime's memory per call against the live-tensor count that
plans tiles (:func:`~napari_tiled_unet.core.tiling.activation_bytes` over its runtime
factor): one int8 call per tile size in a fresh session, its peak RSS above the RSS before
it, for the paper-size U-Net and one with 16 base filters, with the sessions' settings.

Usage: ``python benchmarks/bench_int8_memory.py [--side 1024] [--options] [--factor]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MIB = 2**20


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class Phases:
    """Peak and end RSS of consecutive phases of this process."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._start = time.perf_counter()
        self.reset()

    def reset(self) -> None:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
        self._start = time.perf_counter()

    def end(self, name: str) -> None:
        seconds = time.perf_counter() - self._start
        row = {"phase": name, "peak": _status("VmHWM"), "after": _status("VmRSS")}
        self.rows.append({**row, "seconds": seconds})
        self.reset()


def mosaic(side: int):
    import numpy as np
    import tifffile

    from napari_tiled_unet.data import nuclei2d_path

    sample = tifffile.imread(nuclei2d_path())
    reps = -(-side // sample.shape[0])
    rows = [
        [sample[:: 1 - 2 * (i % 2), :: 1 - 2 * (j % 2)] for j in range(reps)] for i in range(reps)
    ]
    return np.block(rows)[:side, :side]


def _instrument(phases: Phases) -> None:
    """Close a phase when export, quantisation and the gate return."""
    from onnxruntime import quantization

    from napari_tiled_unet.core import int8, onnx_export

    def wrap(owner, name, phase):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            result = original(*args, **kwargs)
            phases.end(phase)
            return result

        setattr(owner, name, wrapped)

    wrap(onnx_export, "export_onnx", "export")
    wrap(quantization, "quantize_static", "calibration")
    wrap(int8, "_measure", "gate")


def child(side: int, first: bool, options: dict) -> None:
    import numpy as np

    from napari_tiled_unet import build_unet, segment
    from napari_tiled_unet.core import onnx_export
    from napari_tiled_unet.core.model.files import wrap_keras_model

    onnx_export.SESSION_OPTIONS.update(options)
    unet = wrap_keras_model(build_unet(seed=0))
    image = mosaic(side)
    unet.predict_batch(np.zeros((1, 188, 188, 1), np.float32))  # TensorFlow loaded
    phases = Phases()
    rows = [{"phase": "baseline (model built)", "peak": _status("VmRSS"), "after": 0}]
    if first:
        _instrument(phases)
    result = segment(unet, image, precision="int8")
    phases.end("run" if first else "cached run, new process")
    if first:
        segment(unet, image, precision="int8")
        phases.end("second run, same process")
    gate = result.int8
    plan = result.plan
    info = {
        "rows": rows + phases.rows,
        "gate": None if gate is None else gate.describe() + f" -> {gate.used}",
        "plan": f"tile {plan.tile_in[0]}, {plan.n_tiles} tile(s), batch {plan.batch_size}",
    }
    print("RESULT " + json.dumps(info))


def run_child(side: int, first: bool, cache: Path, options: dict) -> dict:
    env = {**os.environ, "NAPARI_TILED_UNET_CACHE": str(cache)}
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import bench_int8_memory as b; "
        f"b.child({side}, {first}, json.loads(sys.argv[1]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(options)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def table(info: dict) -> None:
    print(f"{'phase':<28}{'peak RSS MiB':>14}{'RSS after MiB':>15}{'s':>8}")
    for row in info["rows"]:
        after = f"{row['after'] / MIB:>15.0f}" if row["after"] else f"{'':>15}"
        seconds = f"{row['seconds']:>8.1f}" if "seconds" in row else f"{'':>8}"
        print(f"{row['phase']:<28}{row['peak'] / MIB:>14.0f}{after}{seconds}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=1024, help="image side (px)")
    parser.add_argument("--options", action="store_true", help="compare session options")
    parser.add_argument("--factor", action="store_true", help="ONNX Runtime's memory factor")
    args = parser.parse_args()
    import onnxruntime
    import tensorflow as tf

    print(
        f"paper-size U-Net (random weights), {args.side} x {args.side} px nuclei mosaic, "
        f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, "
        f"ONNX Runtime {onnxruntime.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-int8-memory-") as tmp:
        cache = Path(tmp)
        first = run_child(args.side, True, cache, {})
        print(f"{first['plan']}; gate: {first['gate']}")
        print("\nfirst int8 run (empty cache), then the same call again")
        table(first)
        print("\ncached int8 run, new process")
        table(run_child(args.side, False, cache, {}))
        if args.options:
            compare_options(args.side, cache)
        if args.factor:
            measure_factor(cache)


def factor_child(base_filters: int, tiles: list[int]) -> None:
    import numpy as np

    from napari_tiled_unet import build_unet
    from napari_tiled_unet.core import int8, onnx_export
    from napari_tiled_unet.core.cache import cache_dir
    from napari_tiled_unet.core.memory import release_memory
    from napari_tiled_unet.core.model.files import wrap_keras_model
    from napari_tiled_unet.core.tiling import RUNTIME_FACTORS, activation_bytes, plan_tiles

    unet = wrap_keras_model(build_unet(seed=0, base_filters=base_filters))
    rng = np.random.default_rng(0)
    plane = mosaic(1300)[..., None].astype(np.float32) / 65535
    plan = plan_tiles(plane.shape[:2], unet.spec, tile_size=572)
    key = int8.int8_model(unet.variant(precision="int8"), [(plane, None)], plan).int8.key
    int8._SESSIONS.clear()
    for tile in tiles:
        call = onnx_export.session_call(onnx_export.ort_session(cache_dir("int8") / f"{key}.onnx"))
        x = rng.random((1, tile, tile, 1), dtype=np.float32)
        call(x[:, :188, :188])  # the session's first call
        release_memory()
        before = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        call(x)
        peak = _status("VmHWM") - before
        live = activation_bytes(unet.spec, (tile, tile)) / RUNTIME_FACTORS["tensorflow"]
        print(
            f"{base_filters:>8}{tile:>6}{live / MIB:>12.0f}{peak / MIB:>12.0f}{peak / live:>8.2f}",
            flush=True,
        )
        del call
        release_memory()


def measure_factor(cache: Path) -> None:
    from napari_tiled_unet.core.tiling import RUNTIME_FACTORS

    print("\nONNX Runtime int8, one call: peak RSS over the float32 live-tensor count")
    print(f"{'filters':>8}{'tile':>6}{'live MiB':>12}{'peak MiB':>12}{'ratio':>8}")
    for filters, tiles in ((64, [572, 892, 1212]), (16, [572, 1212])):
        code = (
            "import sys; sys.path.insert(0, 'benchmarks'); import bench_int8_memory as b; "
            f"b.factor_child({filters}, {tiles})"
        )
        env = {**os.environ, "NAPARI_TILED_UNET_CACHE": str(cache)}
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        if out.returncode != 0:
            sys.exit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
        print(out.stdout, end="")
    print(f"estimate's factors: {RUNTIME_FACTORS}")


def compare_options(side: int, cache: Path) -> None:
    print("\nONNX Runtime session options, cached int8 run, new process each")
    print(f"{'enable_mem_pattern':<20}{'cpu arena':<11}{'peak RSS MiB':>14}{'run s':>8}")
    for pattern in (True, False):
        for arena in (True, False):
            options = {"enable_mem_pattern": pattern, "enable_cpu_mem_arena": arena}
            info = run_child(side, False, cache, options)
            row = info["rows"][-1]
            print(f"{pattern!s:<20}{arena!s:<11}{row['peak'] / MIB:>14.0f}{row['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
