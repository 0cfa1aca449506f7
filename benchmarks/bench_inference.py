"""Inference speed of the paper-size U-Net on a 1024 x 1024 image (random weights, fp32).

(a) naive: a fixed 572 x 572 model called on one mirror-padded tile at a time (388 px
    stride), as a user of the paper's fixed-size network would;
(b) ``segment`` with automatic tiles (memory budget default).

Each variant runs in its own process so that its peak RSS is its own.  The last line is
``speedup_vs_naive=<b/a>``.  Usage: ``python benchmarks/bench_inference.py [--size 1024]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def conv_flops(depth: int, base: int, channels: int, classes: int, size: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one forward pass at a square input ``size``."""
    flops, s, c = 0.0, size, channels
    skips = []
    for level in range(depth + 1):
        f = base * 2**level
        flops += 2 * 9 * c * f * (s - 2) ** 2 + 2 * 9 * f * f * (s - 4) ** 2
        s, c = s - 4, f
        if level < depth:
            skips.append(f)
            s //= 2
    for f in reversed(skips):
        flops += 2 * 4 * c * f * (2 * s) ** 2  # 2x2 stride-2 up-convolution
        s *= 2
        flops += 2 * 9 * 2 * f * f * (s - 2) ** 2 + 2 * 9 * f * f * (s - 4) ** 2
        s, c = s - 4, f
    return flops + 2 * c * classes * s**2


def run_matmul() -> dict:
    import tensorflow as tf

    n = 2048
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(5):
            c = tf.linalg.matmul(a, b)
        c.numpy()
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return {"gflops": best}


def run_naive(size: int, repeats: int) -> dict:
    from napari_tiled_unet import build_unet

    model = build_unet(input_size=572, seed=0)
    image = np.random.default_rng(0).random((size, size), dtype=np.float32)
    n = -(-size // 388)
    padded = np.pad(image, ((92, 92 + n * 388 - size),) * 2, mode="reflect")
    model.predict(padded[None, :572, :572, None], verbose=0)  # warm-up (graph tracing)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = np.zeros((n * 388, n * 388, 2), np.float32)
        for i in range(n):
            for j in range(n):
                tile = padded[i * 388 : i * 388 + 572, j * 388 : j * 388 + 572]
                out[i * 388 : (i + 1) * 388, j * 388 : (j + 1) * 388] = model.predict(
                    tile[None, :, :, None], verbose=0
                )[0]
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "tile": 572, "tiles": n * n, "batch": 1}


def run_segment(size: int, repeats: int) -> dict:
    from napari_tiled_unet import build_unet, segment
    from napari_tiled_unet.core.model.files import wrap_keras_model

    model = wrap_keras_model(build_unet(seed=0))
    image = np.random.default_rng(0).random((size, size), dtype=np.float32)
    result = segment(model, image, normalize=None)  # warm-up (graph tracing)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = segment(model, image, normalize=None)
        best = min(best, time.perf_counter() - start)
    plan = result.plan
    return {
        "seconds": best,
        "tile": plan.tile_in[0],
        "tiles": plan.n_tiles,
        "batch": plan.batch_size,
    }


def child(variant: str, size: int, repeats: int) -> None:
    info = {"matmul": run_matmul, "naive": run_naive, "segment": run_segment}[variant]
    result = info() if variant == "matmul" else info(size, repeats)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def spawn(variant: str, size: int, repeats: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--size",
            str(size),
            "--repeats",
            str(repeats),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=("matmul", "naive", "segment"))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, args.repeats)
        return
    gflops = spawn("matmul", args.size, args.repeats)["gflops"]
    rows = {name: spawn(name, args.size, args.repeats) for name in ("naive", "segment")}
    mpx = args.size**2 / 1e6
    print(
        f"image {args.size}x{args.size}, paper U-Net (31,030,658 parameters, fp32), "
        f"{os.cpu_count()} CPU cores; TF fp32 matmul measured: {gflops:.0f} GFLOP/s"
    )
    print(
        f"{'variant':<26}{'tile':>6}{'tiles':>7}{'batch':>7}{'seconds':>9}{'Mpx/s':>8}"
        f"{'MFLOP/out px':>14}{'GFLOP/s':>9}{'% of limit':>11}{'peak RSS MiB':>14}"
    )
    for name, label in (("naive", "(a) naive 572 tiles"), ("segment", "(b) segment, auto tiles")):
        r = rows[name]
        out_px = (r["tile"] - 184) ** 2
        per_px = conv_flops(4, 64, 1, 2, r["tile"]) / out_px / 1e9
        achieved = per_px * out_px * r["tiles"] / r["seconds"]
        print(
            f"{label:<26}{r['tile']:>6}{r['tiles']:>7}{r['batch']:>7}{r['seconds']:>9.2f}"
            f"{mpx / r['seconds']:>8.3f}{per_px * 1e3:>14.2f}{achieved:>9.1f}"
            f"{100 * achieved / gflops:>10.0f}%{r['peak_rss_mib']:>14.0f}"
        )
    print(f"speedup_vs_naive={rows['naive']['seconds'] / rows['segment']['seconds']:.2f}")


if __name__ == "__main__":
    main()
