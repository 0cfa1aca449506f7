"""Inference speed: a naive 572-tile loop against ``segment`` in float32, bfloat16 and int8.

Models: the paper-size U-Net (31,030,658 parameters, random weights) and the bundled
nuclei model.  Images: 1024 x 1024 and 2048 x 2048 mosaics of the bundled nuclei sample
(mirrored copies), normalised once, so that every variant sees the same float32 input.

Variants, each in its own process (its peak RSS is its own):

- naive: one ``model.predict`` per mirror-padded tile of the valid size nearest 572 px
  (388 px of output for the paper model), float32, batch 1, as a user of the paper's
  fixed-size network would run it;
- segment fp32: ``segment`` with automatic tiles (default memory budget);
- segment bf16: ``segment(precision="bfloat16")``.  Where the CPU has no native bfloat16
  (no avx512_bf16/amx_bf16) and there is no GPU, the bfloat16 model still runs, emulated,
  and the row says so; its speed then says nothing about bfloat16 hardware.
- segment int8: ``segment(precision="int8")`` (ONNX Runtime, the ``onnx`` extra).  A first
  run calibrates on the image and runs the gate (its time is shown apart, as "calib s");
  the timed runs then find the quantised model and the gate result in the cache (a
  temporary folder of this benchmark).  When the gate fails, the row runs the fallback and
  says so; without onnxruntime the row says n/a.

Emulated bfloat16 is measured at the first image size only (for its agreement).

Columns: Mpx/s, speed relative to naive, percent of the limit (the FLOPs per output pixel
at the tile used times Mpx/s, divided by the rate of a large ``tf.matmul`` measured in the
same run, float32 or bfloat16), peak RSS, and argmax agreement with segment fp32.  Then
the warm latency of one 512 x 512 image with the paper model in bfloat16, and (not with
``--quick``) the bundled model on a 4096 x 4096 image with a 300 MB memory budget.  The
last line is ``speedup_vs_naive=<fp32> bf16_speedup_vs_naive=<bf16> int8_speedup_vs_naive=<int8>``
(paper model, the first image size; n/a where a mode is unavailable or only emulated, and
for int8 where its gate failed).

Usage: ``python benchmarks/bench_inference.py [--quick]``; ``--quick`` (a check that the
script works, < 2 minutes on a quiet machine) runs 512 x 512 images only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NAIVE_TILE = 572
MODELS = ("paper", "bundled")


def load_unet(kind: str):
    from napari_tiled_unet import build_unet, load_model
    from napari_tiled_unet.core.model.files import wrap_keras_model

    if kind == "paper":
        return wrap_keras_model(build_unet(seed=0))
    from napari_tiled_unet.batch.models import bundled_models

    return load_model(bundled_models()[0])


def mosaic(size: int) -> np.ndarray:
    """A ``size`` x ``size`` float32 image: the nuclei sample mirrored, normalised once."""
    import tifffile

    from napari_tiled_unet import PercentileNormalizer
    from napari_tiled_unet.data import nuclei2d_path

    sample = tifffile.imread(nuclei2d_path()).astype(np.float32)
    reps = -(-size // sample.shape[0])
    tiled = np.block([[sample[:: 1 - 2 * (i % 2), :: 1 - 2 * (j % 2)] for j in range(reps)]
                      for i in range(reps)])[:size, :size]  # fmt: skip
    normalizer = PercentileNormalizer()
    return normalizer.apply(tiled[..., None], *normalizer.statistics(tiled[..., None]))[..., 0]


def run_matmul() -> dict:
    import tensorflow as tf

    from napari_tiled_unet.core._keras import get_tf

    get_tf()
    n, rates = 2048, {}
    for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16)):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        tf.linalg.matmul(a, b).numpy()
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(3):
                c = tf.linalg.matmul(a, b)
            c.numpy()
            best = max(best, 3 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
        rates[name] = best
    return rates


def run_naive(kind: str, size: int, repeats: int, labels_path: str) -> dict:
    unet = load_unet(kind)
    spec, model = unet.spec, unet.keras_model
    tile = spec.nearest_valid_input_size(NAIVE_TILE)
    out_size, halo = spec.output_size(tile), spec.halo
    image = mosaic(size)
    n = -(-size // out_size)
    padded = np.pad(image, ((halo, tile - out_size - halo + n * out_size - size),) * 2, "reflect")
    model.predict(padded[None, :tile, :tile, None], verbose=0)  # warm-up (graph tracing)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = np.zeros((n * out_size, n * out_size, spec.num_classes), np.float32)
        for i in range(n):
            for j in range(n):
                y, x = i * out_size, j * out_size
                tile_in = padded[y : y + tile, x : x + tile]
                out[y : y + out_size, x : x + out_size] = model.predict(
                    tile_in[None, :, :, None], verbose=0
                )[0]
        best = min(best, time.perf_counter() - start)
    np.save(labels_path, out[:size, :size].argmax(-1).astype(np.uint8))
    return {"seconds": best, "tile": tile, "tiles": n * n, "batch": 1, "precision": "float32"}


def run_segment(kind: str, size: int, repeats: int, labels_path: str, precision: str) -> dict:
    import warnings

    from napari_tiled_unet import segment
    from napari_tiled_unet.core.precision import PrecisionWarning, effective_precision
    from napari_tiled_unet.core.tiling import plan_tiles

    unet = load_unet(kind)
    if precision == "int8":
        return run_int8(unet, mosaic(size), repeats, labels_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        native = effective_precision(precision) == precision
    model = unet.variant(precision=precision)  # emulated where the CPU lacks it
    image = mosaic(size)
    options = {"normalize": None, "object_size": "none", "precision": model.precision}
    plan = plan_tiles(image.shape, model.spec)
    # warm-up (tracing, kernel choice) on one batch of tiles of the size the run uses
    part = image[: plan.tile_out[0], : plan.tile_out[1] * plan.batch_size]
    segment(model, part, tile_size=plan.tile_in, batch_size=plan.batch_size, **options)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = segment(model, image, **options)
        best = min(best, time.perf_counter() - start)
    np.save(labels_path, result.labels)
    plan = result.plan
    return {
        "seconds": best,
        "tile": plan.tile_in[0],
        "tiles": plan.n_tiles,
        "batch": plan.batch_size,
        "precision": precision if native else f"{precision} (emulated)",
    }


def run_int8(unet, image: np.ndarray, repeats: int, labels_path: str) -> dict:
    import warnings

    from napari_tiled_unet import segment
    from napari_tiled_unet.core.onnx_export import missing_onnx

    if missing_onnx() is not None:
        return {"missing": missing_onnx()}
    options = {"normalize": None, "object_size": "none", "precision": "int8"}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NAPARI_TILED_UNET_CACHE"] = cache
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            result = segment(unet, image, **options)  # calibrates, runs the gate, caches
            calibration = time.perf_counter() - start
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                result = segment(unet, image, **options)
                best = min(best, time.perf_counter() - start)
    np.save(labels_path, result.labels)
    gate, plan = result.int8, result.plan
    used = "int8" if gate.used == "int8" else f"int8 -> {gate.used}"
    return {
        "seconds": best,
        "tile": plan.tile_in[0],
        "tiles": plan.n_tiles,
        "batch": plan.batch_size,
        "precision": used,
        "calibration_seconds": calibration,
        "gate": gate.to_dict(),
    }


def run_latency(repeats: int) -> dict:
    import warnings

    from napari_tiled_unet import segment
    from napari_tiled_unet.core.precision import PrecisionWarning, effective_precision

    unet = load_unet("paper")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        native = effective_precision("bfloat16") == "bfloat16"
    model = unet.variant(precision="bfloat16")
    image = mosaic(512)
    segment(model, image, normalize=None, precision="bfloat16")  # warm
    best = float("inf")
    for _ in range(max(repeats, 2)):
        start = time.perf_counter()
        segment(model, image, normalize=None, precision="bfloat16")
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "native": native}


def run_budget(size: int) -> dict:
    from napari_tiled_unet import segment

    unet = load_unet("bundled")
    image = mosaic(size)
    start = time.perf_counter()
    result = segment(unet, image, normalize=None, object_size="none", memory_budget="300MB")
    plan = result.plan
    return {
        "seconds": time.perf_counter() - start,
        "tile": plan.tile_in[0],
        "batch": plan.batch_size,
        "estimate_mib": plan.memory_per_batch / 2**20,
    }


def child(args: argparse.Namespace) -> None:
    if args.child == "matmul":
        result = run_matmul()
    elif args.child == "latency":
        result = run_latency(args.repeats)
    elif args.child == "budget":
        result = run_budget(args.size)
    elif args.child == "naive":
        result = run_naive(args.model, args.size, args.repeats, args.labels)
    else:
        result = run_segment(args.model, args.size, args.repeats, args.labels, args.child)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def spawn(
    variant: str, model: str = "paper", size: int = 0, repeats: int = 1, labels: str = ""
) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--model", model]
    command += ["--size", str(size), "--repeats", str(repeats), "--labels", labels]
    out = subprocess.run(command, capture_output=True, text=True)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{variant} ({model}, {size} px) failed: {tail}")
    return json.loads(lines[-1][len("RESULT ") :])


def flops_per_pixel(kind: str, tile: int) -> float:
    from napari_tiled_unet.core.model.geometry import NetworkSpec, output_size
    from napari_tiled_unet.core.tiling import tile_flops

    depth, base, classes = (4, 64, 2) if kind == "paper" else _bundled_shape()
    out = output_size(tile, depth)
    assert out is not None
    spec = NetworkSpec(depth=depth, base_filters=base, num_classes=classes)
    return tile_flops(spec, (tile, tile)) / out**2


def _bundled_shape() -> tuple[int, int, int]:
    from napari_tiled_unet.batch.models import bundled_models
    from napari_tiled_unet.core.model.inspect import read_metadata

    meta = read_metadata(Path(bundled_models()[0]))
    return meta.depth, meta.base_filters, meta.num_classes


def table(kind: str, size: int, repeats: int, rates: dict, folder: str, bf16: bool) -> dict:
    rows = {}
    for variant in ("naive", "float32", "bfloat16") if bf16 else ("naive", "float32"):
        labels = os.path.join(folder, f"{kind}-{size}-{variant}.npy")
        rows[variant] = spawn(variant, kind, size, repeats, labels) | {"labels": labels}
    labels = os.path.join(folder, f"{kind}-{size}-int8.npy")
    try:
        int8 = spawn("int8", kind, size, repeats, labels) | {"labels": labels}
    except SystemExit as exc:  # a failed int8 child: the other rows still stand
        int8 = {"missing": f"failed ({exc})", "failed": True}
    if "missing" not in int8:
        rows["int8"] = int8
    reference = np.load(rows["float32"]["labels"])
    mpx = size**2 / 1e6
    print(f"\n{kind} model, {size} x {size} px")
    print(
        f"{'variant':<30}{'tile':>6}{'tiles':>7}{'batch':>6}{'s':>8}{'Mpx/s':>8}{'x naive':>8}"
        f"{'% limit':>8}{'RSS MiB':>9}{'agree':>9}"
    )
    for variant, r in rows.items():
        rate = mpx / r["seconds"]
        achieved = flops_per_pixel(kind, r["tile"]) * rate * 1e6 / 1e9
        limit = rates["float32" if variant in ("naive", "float32") else "bfloat16"]
        agree = (np.load(r["labels"]) == reference).mean()
        label = "naive 572 loop, float32" if variant == "naive" else f"segment {r['precision']}"
        r["ratio"] = rows["naive"]["seconds"] / r["seconds"]
        print(
            f"{label:<30}{r['tile']:>6}{r['tiles']:>7}{r['batch']:>6}{r['seconds']:>8.2f}"
            f"{rate:>8.3f}{r['ratio']:>8.2f}{100 * achieved / limit:>7.0f}%"
            f"{r['peak_rss_mib']:>9.0f}{100 * agree:>8.2f}%"
        )
    if not bf16:
        print(f"{'segment bfloat16':<30}{'skipped: only emulated here (see above)':>50}")
    if "int8" in rows:
        gate = rows["int8"]["gate"]
        print(
            f"  int8: calib + gate {rows['int8']['calibration_seconds']:.1f} s (first run); "
            f"gate: {gate['summary']} -> {gate['used']}"
        )
    else:
        why = int8["missing"] if int8.get("failed") else f"{int8['missing']} not installed"
        print(f"{'segment int8':<30}{'n/a: ' + why:>50}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 x 512 images only")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs (best is kept)")
    parser.add_argument(
        "--child",
        choices=("matmul", "latency", "budget", "naive", "float32", "bfloat16", "int8"),
    )
    parser.add_argument("--model", choices=MODELS, default="paper")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--labels", default="")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    started = time.perf_counter()
    rates = spawn("matmul")
    print(
        f"{os.cpu_count()} CPU cores; TF matmul 2048^2: {rates['float32']:.0f} GFLOP/s float32, "
        f"{rates['bfloat16']:.0f} GFLOP/s bfloat16"
    )
    sizes = (512,) if args.quick else (1024, 2048)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in MODELS:
            bf16 = True
            for size in sizes:
                results[kind, size] = table(kind, size, args.repeats, rates, folder, bf16)
                # emulated bfloat16 says nothing about speed: measure its agreement once
                bf16 = "emulated" not in results[kind, size]["bfloat16"]["precision"]
    if args.quick:
        latency = {"seconds": results["paper", 512]["bfloat16"]["seconds"]}
        native = "emulated" not in results["paper", 512]["bfloat16"]["precision"]
    else:
        latency = spawn("latency", repeats=args.repeats)
        native = latency["native"]
    if not args.quick:
        r = spawn("budget", "bundled", 4096)
        print(
            f"bundled model, 4096 x 4096 px, --memory-budget 300MB: tile {r['tile']}, batch "
            f"{r['batch']}, activation estimate {r['estimate_mib']:.0f} MiB, "
            f"{r['seconds']:.1f} s (cold), peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    note = "" if native else " (emulated: this machine has no native bfloat16)"
    print(f"\nlatency, one 512 x 512 image, paper model, bfloat16, warm: "
          f"{latency['seconds']:.2f} s{note}")  # fmt: skip
    print(f"total {time.perf_counter() - started:.0f} s")
    main_rows = results["paper", sizes[0]]
    bf16 = f"{main_rows['bfloat16']['ratio']:.2f}" if native else "n/a"
    ran_int8 = main_rows.get("int8", {}).get("precision") == "int8"
    int8 = f"{main_rows['int8']['ratio']:.2f}" if ran_int8 else "n/a"
    print(
        f"speedup_vs_naive={main_rows['float32']['ratio']:.2f} "
        f"bf16_speedup_vs_naive={bf16} int8_speedup_vs_naive={int8}"
    )


if __name__ == "__main__":
    main()
