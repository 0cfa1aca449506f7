"""``napari-tiled-unet segment``: TIFF files and stacks through the batch engine.

Only the standard library is imported until the command runs; the engine is
:func:`napari_tiled_unet.batch.run.iter_batch`, its progress bars
:class:`~napari_tiled_unet.cli.progress.TqdmProgress`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from napari_tiled_unet.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, USER_ERRORS, fail, one_line
from napari_tiled_unet.core.options import (
    DEFAULT_MIN_CONTRAST,
    DEFAULT_MIN_SIZE,
    DEFAULT_OUTPUT,
    OUTPUT_CHOICES,
)

__all__ = ["add_segment_parser", "run_segment"]

_SEGMENT_EPILOG = """\
examples:
  napari-tiled-unet segment data/ -o results --model unet.keras
      every file in data/ -> results/<stem>_labels.tif, plus results/napari-tiled-unet-run.json
  napari-tiled-unet segment "data/**/*.tif" -o results --model unet.keras --probabilities
  napari-tiled-unet segment stack.tif -o results --model unet.keras --axes TZYX --workers 4
  napari-tiled-unet segment data/ -o results --model unet.keras --scheduler tcp://10.0.0.5:8786

Outputs appear only when complete.  After an interruption (Ctrl-C, a crash, a killed job)
run the same command again: finished files are skipped, unfinished ones are redone, and
the results are byte-identical to an uninterrupted run.  Ctrl-C stops after the current
plane; a second Ctrl-C stops at once.  A file that cannot be segmented is reported in one
line and the others go on; the exit status is then 2 (130 after Ctrl-C)."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_segment_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``segment`` subcommand to ``commands`` (an argparse subparsers object)."""
    seg = commands.add_parser(
        "segment",
        help="segment TIFF images and stacks into label (and probability) TIFFs",
        description="Segment TIFF images and stacks with a U-Net, plane by plane.\n"
        "Writes OUTDIR/<stem>_labels.tif for every input: an ImageJ hyperstack with the\n"
        "input's axes and pixel size (OME BigTIFF from 4 GB).",
        epilog=_SEGMENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = seg.add_argument
    add(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="TIFF files, folders (every file in them) or quoted glob patterns "
        '(example: data/ "runs/**/*.tif" cells.ome.tif)',
    )
    add(
        "-o",
        "--outdir",
        required=True,
        type=Path,
        metavar="OUTDIR",
        help="folder for the results, created if missing (example: -o results)",
    )
    add(
        "--model",
        type=Path,
        metavar="PATH",
        help="U-Net model file (.keras, .h5) or bioimage.io package (.zip, folder); "
        "default: the bundled nuclei model (example: --model unet.keras)",
    )
    add(
        "--axes",
        metavar="AXES",
        help="axes of every input, overriding the file's metadata (example: --axes TZYX)",
    )
    add(
        "--tile-size",
        type=_positive,
        metavar="N",
        help="input tile size in px; default: automatic from memory (example: --tile-size 572)",
    )
    add(
        "--memory-budget",
        type=_memory_size,
        metavar="SIZE",
        help="activation memory per network call, which sets the automatic tile and batch "
        "size; default: a quarter of the available memory (256 MB to 8 GB). A call that "
        "still runs out of memory is retried with half the batch, then smaller tiles, with "
        "one warning and the same result (example: --memory-budget 2GB, 300MB, 1.5GiB)",
    )
    add(
        "--precision",
        choices=("float32", "bfloat16", "float16", "int8"),
        default="float32",
        help="arithmetic of the network; bfloat16 needs a CPU with avx512_bf16/amx_bf16 or a "
        "GPU, float16 a GPU (elsewhere: float32, with one warning); int8 (the onnx extra) is "
        "quantised on tiles of the inputs and used only where its labels agree with float32's "
        "on other tiles (else bfloat16 or float32, with one warning); the softmax is always "
        "float32 (example: --precision bfloat16)",
    )
    add(
        "--tta",
        nargs="?",
        const="all",
        metavar="WHICH",
        help="test-time augmentation: average the softmax over the 8 flips and rotations "
        "(all, the default for --tta), the identity and the flips (flips: 4) or named "
        "transforms (identity,rot90,rot180,rot270,flip_y,flip_x,transpose,antitranspose); "
        "costs one network pass each: --tta makes the network time 8x "
        "(example: --tta, --tta flips)",
    )
    add(
        "--threads",
        type=_positive,
        metavar="N",
        help="CPU threads for the network; default: all cores (example: --threads 4)",
    )
    add(
        "--batch-size",
        type=_positive,
        metavar="N",
        help="tiles per network call; default: as many as memory allows (example: --batch-size 4)",
    )
    add(
        "--normalize",
        choices=("percentile", "none", "auto"),
        default="auto",
        help="input normalisation; auto = what the model asks for (example: --normalize none)",
    )
    add(
        "--object-size",
        type=_object_size,
        metavar="auto|none|PX",
        help="typical object diameter of the inputs in px; images are resampled so that "
        "their objects match the model's training size, and the results back. auto "
        "(default for models that record their size, such as the bundled one) estimates it "
        "per file; none segments at the file's own scale (example: --object-size 60)",
    )
    add(
        "--probabilities",
        action="store_true",
        help="also write <stem>_probabilities.tif: float32 as an ImageJ hyperstack with the "
        "classes as channels (TZCYX), float16 with the classes last (example: --probabilities)",
    )
    add(
        "--probability-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="pixel type of the probabilities (example: --probability-dtype float16)",
    )
    add(
        "--output",
        dest="labels_output",
        choices=OUTPUT_CHOICES,
        default=DEFAULT_OUTPUT,
        help="what <stem>_labels.tif holds: class labels, or instance labels (each object its "
        f"own number, per plane); default: {DEFAULT_OUTPUT} = instances for models with a "
        "border class, such as the bundled one, classes otherwise (example: --output classes)",
    )
    add(
        "--min-size",
        type=_non_negative,
        default=DEFAULT_MIN_SIZE,
        metavar="PX",
        help="with instance labels, drop objects smaller than this many pixels; default: "
        f"{DEFAULT_MIN_SIZE} (example: --min-size 50)",
    )
    add(
        "--min-contrast",
        type=_fraction,
        default=DEFAULT_MIN_CONTRAST,
        metavar="F",
        help="with instance labels, drop objects fainter than this fraction of the typical "
        "object of their plane (mean intensity above the local background); 0 keeps faint "
        f"ones too (default: {DEFAULT_MIN_CONTRAST}; example: --min-contrast 0)",
    )
    add(
        "--overwrite",
        action="store_true",
        help="redo inputs whose outputs exist; default: skip them (example: --overwrite)",
    )
    where = seg.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="run planes on N local Dask worker processes (example: --workers 4)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing Dask cluster; inputs and model must be on a shared file "
        "system (example: --scheduler tcp://10.0.0.5:8786)",
    )
    add("-q", "--quiet", action="store_true", help="no progress bars (example: -q)")
    seg.set_defaults(run=run_segment)
    return seg


class _Interrupts:
    """Ctrl-C once: stop after the current plane; twice (or SIGTERM): stop at once."""

    def __init__(self) -> None:
        import threading

        self.stop = threading.Event()
        self._saved: dict[int, Any] = {}

    def _first(self, signum: int, frame: Any) -> None:
        self.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if sys.stderr.isatty():  # feedback for people; logs get the one final line
            print(
                "\nnapari-tiled-unet: stopping after the current plane (Ctrl-C again: now)",
                file=sys.stderr,
            )

    def __enter__(self) -> _Interrupts:
        self._saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, self._first)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)


#: What a command without --model says when no model is bundled either.
NO_MODEL = "--model is required: give a .keras or .h5 U-Net model file"


def model_or_bundled(model: Path | None) -> Path | None:
    """Return ``model``, else the bundled default model, else None (nothing bundled)."""
    if model is not None:
        return model
    from napari_tiled_unet.batch.models import bundled_models

    bundled = bundled_models()
    return bundled[0] if bundled else None


def run_segment(args: argparse.Namespace) -> int:
    """Run ``segment`` with parsed arguments; return the exit status."""
    args.model = model_or_bundled(args.model)
    if args.model is None:
        return fail(NO_MODEL)
    from napari_tiled_unet.batch.run import iter_batch
    from napari_tiled_unet.cli.progress import TqdmProgress

    try:
        if args.threads is not None:
            from napari_tiled_unet.core._keras import set_threads

            set_threads(args.threads)
        with _Interrupts() as interrupts:
            steps = iter_batch(
                args.inputs,
                args.outdir,
                model=args.model,
                stop=interrupts.stop,
                workers=args.workers,
                scheduler=args.scheduler,
                record_extra={"command": ["napari-tiled-unet", *getattr(args, "argv", [])]},
                axes=args.axes,
                tile_size=args.tile_size,
                batch_size=args.batch_size,
                memory_budget=args.memory_budget,
                precision=args.precision,
                tta=args.tta or False,
                normalize=args.normalize,
                probabilities=args.probabilities,
                probability_dtype=args.probability_dtype,
                overwrite=args.overwrite,
                output=args.labels_output,
                min_size=args.min_size,
                min_contrast=args.min_contrast,
                object_size=args.object_size,
            )
            summary = TqdmProgress(quiet=args.quiet).drain(steps)
    except KeyboardInterrupt:
        return fail(
            "interrupted; unfinished outputs were removed, rerun to resume", EXIT_INTERRUPTED
        )
    except USER_ERRORS as exc:
        return fail(one_line(exc))
    if summary.cancelled:
        return fail(
            "stopped after the current plane; rerun the same command to resume", EXIT_INTERRUPTED
        )
    return 0 if summary.ok else EXIT_FAILED


def _fraction(text: str) -> float:
    """Return a number in [0, 1) (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"give a fraction from 0 to below 1, not {text!r}")
    return value


def _memory_size(text: str) -> int:
    """Read a memory size such as 300MB, 2GB, 1.5GiB or plain bytes (argparse type)."""
    from napari_tiled_unet.core.tiling import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _object_size(text: str) -> str | float:
    """``auto``, ``none`` or a diameter in px (argparse type)."""
    if text.lower() in ("auto", "none"):
        return text.lower()
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"give auto, none or a diameter in px > 0, not {text!r}")
    return value
