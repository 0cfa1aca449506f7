"""Automatic tiles from the FLOP model against tiles from this machine's measured timings.

For the paper-size U-Net (random weights) and the bundled nuclei model: ``tune_tiles``
times one call at the ladder of tile sizes (into a temporary cache folder), then
``segment`` runs on square mosaics of the nuclei sample with the FLOP model's automatic
tile and with the tile chosen from the timings (same memory budget), warm, best of
``--repeats``.  Prints the timings table per model, then one row per image: tile and
tiles per plane of each choice, seconds, and the ratio.  Nothing is asserted.

Usage (from the repository root)::

    python benchmarks/bench_tuned_tiles.py [--models paper bundled] [--sizes 1024 2048]
        [--memory-budget 8GB] [--repeats 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference import load_unet, mosaic


def best_time(fn, repeats: int) -> float:
    fn()  # compiles the tile shape
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["paper", "bundled"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024, 2048])
    parser.add_argument("--memory-budget", default="8GB")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ["NAPARI_TILED_UNET_CACHE"] = tempfile.mkdtemp(prefix="tuned-tiles-")

    from napari_tiled_unet import segment, tune_tiles
    from napari_tiled_unet.core.tiling import plan_tiles

    for kind in args.models:
        unet = load_unet(kind)
        start = time.perf_counter()
        timings = tune_tiles(unet, memory_budget=args.memory_budget)
        print(f"\n{kind} model: tuned in {time.perf_counter() - start:.1f} s on {timings.machine}")
        print(timings.table(unet.spec))
        print(f"{'image':>6}{'FLOP tile':>11}{'s':>8}{'timed tile':>12}{'s':>8}{'ratio':>7}")
        for size in args.sizes:
            image = mosaic(size)
            shape = (size, size)
            flops = plan_tiles(shape, unet.spec, memory_budget=args.memory_budget)
            timed = plan_tiles(shape, unet.spec, memory_budget=args.memory_budget, timings=timings)
            seconds = [
                best_time(
                    functools.partial(
                        segment,
                        unet,
                        image,
                        normalize=None,
                        object_size="none",
                        tile_size=plan.tile_in,
                        batch_size=plan.batch_size,
                    ),
                    args.repeats,
                )
                for plan in (flops, timed)
            ]
            print(
                f"{size:>6}{flops.tile_in[0]:>7} x{flops.n_tiles:>2}{seconds[0]:>8.2f}"
                f"{timed.tile_in[0]:>8} x{timed.n_tiles:>2}{seconds[1]:>8.2f}"
                f"{seconds[0] / seconds[1]:>7.2f}"
            )


if __name__ == "__main__":
    main()
