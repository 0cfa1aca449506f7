"""``napari-tiled-unet tune``: time a model's tile sizes on this machine (standard library here).

The work is :func:`napari_tiled_unet.core.autotune.tune_tiles`, imported when the command
runs, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_tiled_unet.cli.errors import USER_ERRORS, fail, one_line

__all__ = ["add_tune_parser", "run_tune"]

_EPILOG = """\
examples:
  napari-tiled-unet tune
  napari-tiled-unet tune --model unet.keras --precision bfloat16 --memory-budget 4GB

Times one network call at a ladder of square tile sizes (each shape compiled first, then
the fastest of up to 3 calls) and keeps the timings in the cache folder, per machine,
network architecture and precision.  From then on, automatic tiles of that network at that
precision (segment, the widgets, the Python API) are those whose cover takes the least
measured time, instead of the least computation.  On 2 CPU cores it took 14 s for the
bundled model and 77 s for the paper-size one.  Run it again after changing the
machine, TensorFlow or --threads; delete the cache folder to forget it."""


def add_tune_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``tune`` subcommand to ``commands`` (an argparse subparsers object)."""
    from napari_tiled_unet.cli.segment import _memory_size, _positive

    tune = commands.add_parser(
        "tune",
        help="time a model's tile sizes on this machine, for faster automatic tiles",
        description="Time a U-Net at several tile sizes on this machine and cache the "
        "timings, which automatic tile choices then follow.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = tune.add_argument
    add(
        "--model",
        type=Path,
        metavar="PATH",
        help="U-Net model file (.keras, .h5) or bioimage.io package; default: the bundled "
        "nuclei model (example: --model unet.keras)",
    )
    add(
        "--precision",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="arithmetic to time; default float32 (example: --precision bfloat16)",
    )
    add(
        "--memory-budget",
        type=_memory_size,
        metavar="SIZE",
        help="largest activation memory per call to try (at most 4 GiB are tried); default: "
        "a quarter of the available memory (example: --memory-budget 2GB)",
    )
    add(
        "--threads",
        type=_positive,
        metavar="N",
        help="TensorFlow threads, as segment --threads; timings are kept per setting "
        "(example: --threads 4)",
    )
    tune.set_defaults(run=run_tune)
    return tune


#: Square images whose automatic tiles are shown before and after the timings.
_IMAGES = (1024, 2048, 4096)


def run_tune(args: argparse.Namespace) -> int:
    """Time the tiles, print the table and what automatic tiles become; return the status."""
    try:
        from napari_tiled_unet.cli.segment import NO_MODEL, model_or_bundled

        args.model = model_or_bundled(args.model)
        if args.model is None:
            return fail(NO_MODEL)
        if args.threads is not None:
            from napari_tiled_unet.core._keras import set_threads

            set_threads(args.threads)
        from napari_tiled_unet.core.autotune import tune_tiles
        from napari_tiled_unet.core.prepare import resolve_model
        from napari_tiled_unet.core.tiling import plan_tiles

        unet = resolve_model(args.model)

        def progress(size: int, seconds: float) -> None:
            print(f"  tile {size} px: {seconds:.3f} s", flush=True)

        print(f"timing {Path(args.model).name} in {args.precision} ...", flush=True)
        timings = tune_tiles(
            unet,
            precision=args.precision,
            memory_budget=args.memory_budget,
            progress=progress,
        )
        print(f"machine: {timings.machine}; precision: {timings.precision}")
        print(timings.table(unet.spec))
        print(f"{'image':>6}{'tile before':>13}{'tile now':>10}")
        for size in _IMAGES:
            shape = (size, size)
            budget = args.memory_budget
            before = plan_tiles(shape, unet.spec, memory_budget=budget)
            after = plan_tiles(shape, unet.spec, memory_budget=budget, timings=timings)
            print(
                f"{size:>6}{before.tile_in[0]:>8} x{before.n_tiles:>3}"
                f"{after.tile_in[0]:>6} x{after.n_tiles:>3}"
            )
    except USER_ERRORS as exc:
        return fail(one_line(exc))
    return 0
