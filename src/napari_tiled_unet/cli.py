"""The ``napari-tiled-unet`` command line.

Only the standard library is imported before the arguments are parsed, so ``--help`` and
usage errors answer at once; numpy, tifffile and TensorFlow load when work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

_SEGMENT_EXAMPLE = """\
example:
  napari-tiled-unet segment cells.tif stack.tif -o results --model my_unet.keras --axes ZYX
writes results/cells_labels.tif and results/stack_labels.tif
(and <stem>_probabilities.tif with --probabilities)."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``napari-tiled-unet`` command."""
    from napari_tiled_unet import __version__

    parser = argparse.ArgumentParser(
        prog="napari-tiled-unet",
        description="Segment microscopy images with the original U-Net "
        "(valid convolutions, overlap-tile inference).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    seg = commands.add_parser(
        "segment",
        help="segment TIFF images and write label (and probability) TIFFs",
        description="Segment TIFF images with a U-Net and write OUTDIR/<stem>_labels.tif.",
        epilog=_SEGMENT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seg.add_argument("inputs", nargs="+", metavar="INPUT", type=Path, help="TIFF image(s)")
    seg.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUTDIR",
        help="folder for the results (created if missing)",
    )
    seg.add_argument("--model", type=Path, metavar="PATH", help="model file (.keras or .h5)")
    seg.add_argument(
        "--axes",
        metavar="AXES",
        help="axes of the images, e.g. YX, ZYX, YXC (default: from the TIFF)",
    )
    seg.add_argument(
        "--tile-size",
        type=int,
        metavar="N",
        help="input tile size in px (default: automatic from memory)",
    )
    seg.add_argument(
        "--normalize",
        choices=("percentile", "none", "auto"),
        default="auto",
        help="input normalisation (default: auto = what the model asks for)",
    )
    seg.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <stem>_probabilities.tif (float32, classes last)",
    )
    return parser


def _fail(message: str) -> int:
    print(f"napari-tiled-unet: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "segment":
        if args.model is None:
            return _fail("--model is required: give a .keras or .h5 U-Net model file")
        missing = [str(p) for p in args.inputs if not p.is_file()]
        if missing:
            return _fail(f"input not found: {', '.join(missing)}; check the path(s)")
        from napari_tiled_unet.io import segment_files

        try:
            written = segment_files(
                args.inputs,
                args.output,
                model=args.model,
                axes=args.axes,
                tile_size=args.tile_size,
                normalize=args.normalize,
                probabilities=args.probabilities,
            )
        except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
            return _fail(str(exc))
        for path in written:
            print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
