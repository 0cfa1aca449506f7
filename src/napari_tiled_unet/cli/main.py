"""The ``napari-tiled-unet`` command line.

Only the standard library is imported before the arguments are parsed, so ``--help`` and
usage errors answer at once; numpy, tifffile, dask and TensorFlow load when work starts.

Each subcommand's parser sets ``run`` (a function of the parsed arguments that returns the
exit status) with ``set_defaults``; adding a subcommand is one ``add_..._parser(commands)``
call in :func:`build_parser`.  Failures are reported as :mod:`.errors` says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_tiled_unet.cli.errors import show_warning

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``napari-tiled-unet`` command."""
    from napari_tiled_unet._version import __version__
    from napari_tiled_unet.cli.demo import add_demo_parser
    from napari_tiled_unet.cli.export import add_export_parser
    from napari_tiled_unet.cli.segment import add_segment_parser
    from napari_tiled_unet.cli.train import add_train_parser
    from napari_tiled_unet.cli.tune import add_tune_parser

    parser = argparse.ArgumentParser(
        prog="napari-tiled-unet",
        description="Segment microscopy images with the original U-Net "
        "(valid convolutions, overlap-tile inference), train it on your own data, and share "
        "it through the BioImage Model Zoo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_segment_parser(commands)
    add_train_parser(commands)
    add_demo_parser(commands)
    add_export_parser(commands)
    add_tune_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
