"""Peak memory of the batch engine against the length of a stack (it should stay flat).

Segments ImageJ stacks of 1024 x 1024 float32 planes (1, 8 and 32 planes, and one stack
larger than 2 GB) with labels and float32 probabilities, each in a fresh process, and prints
the peak resident memory of that process.  The baseline is the resident memory after
TensorFlow and the model are loaded.  The stack above 2 GB runs with a tiny U-Net so that it
finishes in minutes; its probabilities (> 4 GB) are written as BigTIFF.

Usage: ``python benchmarks/bench_batch_memory.py [--workdir DIR]`` (needs ~8 GB of disk,
removed afterwards).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIDE = 1024
SMALL = {"depth": 4, "base_filters": 16}  # a reduced paper U-Net (paper: 64 filters)
TINY = {"depth": 2, "base_filters": 4}
BIG_PLANES = 2 * 2**30 // (SIDE * SIDE * 4) + 8  # just over 2 GiB of float32
CASES = [
    ("small", SMALL, 1),
    ("small", SMALL, 8),
    ("small", SMALL, 32),
    ("tiny", TINY, 1),
    ("tiny", TINY, 8),
    ("tiny", TINY, 32),
    ("tiny", TINY, BIG_PLANES),
]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_stack(path: Path, planes: int) -> None:
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    pages = (rng.random((SIDE, SIDE), dtype=np.float32) for _ in range(planes))
    tifffile.imwrite(
        path,
        pages,
        shape=(planes, SIDE, SIDE),
        dtype=np.float32,
        imagej=True,
        metadata={"axes": "ZYX"},
        bigtiff=False,
    )


def child(workdir: Path, name: str, planes: int) -> None:
    import tifffile

    from napari_tiled_unet import build_unet, save_model
    from napari_tiled_unet.batch.run import run_batch
    from napari_tiled_unet.core.model.files import load_model

    config = SMALL if name == "small" else TINY
    model_path = workdir / f"{name}.keras"
    if not model_path.exists():
        save_model(build_unet(seed=0, **config), model_path)
    unet = load_model(model_path)
    unet.predict_batch(__import__("numpy").zeros((1, 188, 188, 1), "float32"))
    baseline = peak_mib()
    stack = workdir / "in" / "stack.tif"
    start = time.perf_counter()
    summary = run_batch([stack], workdir / "out", model=unet, probabilities=True)
    seconds = time.perf_counter() - start
    assert summary.ok, summary.files
    probs = workdir / "out" / "stack_probabilities.tif"
    with tifffile.TiffFile(probs) as tif:
        big = "BigTIFF" if tif.is_bigtiff else "TIFF"
    print(
        f"{name:>6}{planes:>8}{stack.stat().st_size / 2**30:>10.2f}"
        f"{probs.stat().st_size / 2**30:>10.2f}{big:>9}{seconds:>9.0f}"
        f"{baseline:>11.0f}{peak_mib():>11.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PLANES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.workdir, args.child[0], int(args.child[1]))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=args.workdir))
    print(
        f"Batch engine, {SIDE}x{SIDE} float32 planes, labels + float32 probabilities.\n"
        f"small = U-Net depth 4 / 16 base filters; tiny = depth 2 / 4 base filters "
        f"(used for the > 2 GB stack so it runs in minutes).\n"
        f"{'model':>6}{'planes':>8}{'in GiB':>10}{'prob GiB':>10}{'format':>9}{'seconds':>9}"
        f"{'base MiB':>11}{'peak MiB':>11}",
        flush=True,
    )
    try:
        for name, _, planes in CASES:
            (workdir / "in").mkdir(exist_ok=True)
            write_stack(workdir / "in" / "stack.tif", planes)
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--workdir",
                    str(workdir),
                    "--child",
                    name,
                    str(planes),
                ],
                check=True,
                stderr=subprocess.DEVNULL,
            )
            shutil.rmtree(workdir / "in")
            shutil.rmtree(workdir / "out")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
