"""``napari-tiled-unet export``: a model file as a bioimage.io package (standard library here).

The work is :func:`napari_tiled_unet.batch.bioimageio.export_bioimageio`, imported when the
command runs, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_tiled_unet.cli.errors import USER_ERRORS, fail, one_line

__all__ = ["add_export_parser", "run_export"]

_EPILOG = """\
examples:
  napari-tiled-unet export my_unet.keras -o my_unet.zip
  napari-tiled-unet export my_unet.keras -o my_unet.zip --author "Ada Lovelace" \\
      --author "Charles Babbage" --license MIT --tag nuclei --tag fluorescence-light-microscopy

The package (bioimage.io model format 0.5) holds keras_v3 and TensorFlow SavedModel weights
(and ONNX with the onnx extra), test tensors computed by the model, a README and a cover, and
is validated with bioimageio.spec before it is written.  Open it in deepImageJ, ilastik,
QuPath or bioimageio.core, or again here: --model my_unet.zip.  Needs the bioimageio extra:
pip install 'napari-tiled-unet[bioimageio]'."""


def add_export_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to ``commands`` (an argparse subparsers object)."""
    export = commands.add_parser(
        "export",
        help="write a model as a bioimage.io (BioImage Model Zoo) package",
        description="Write a U-Net model file as a bioimage.io model package (.zip).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = export.add_argument
    add("model", type=Path, metavar="MODEL", help="the .keras model file (example: unet.keras)")
    add(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="ZIP",
        help="the package to write, ending in .zip (example: -o unet.zip)",
    )
    add("--name", help="package name; default: the model's (example: --name 'Nuclei U-Net')")
    add(
        "--description",
        help="one paragraph; default: the model's description "
        "(example: --description 'Nuclei in DAPI images, 40x')",
    )
    add(
        "--author",
        action="append",
        dest="authors",
        metavar="NAME",
        help="an author, repeat for several; default: your login name (example: --author 'A. B')",
    )
    add(
        "--license",
        default=None,
        metavar="SPDX",
        help="licence (SPDX identifier); default CC-BY-4.0 (example: --license MIT)",
    )
    add(
        "--tag",
        action="append",
        dest="tags",
        metavar="TAG",
        help="a search tag, repeat for several; default: unet, segmentation, 2d, ... "
        "(example: --tag nuclei)",
    )
    add(
        "--readme",
        type=Path,
        metavar="MD",
        help="ship this README instead of one written from the model's metadata "
        "(example: --readme README.md)",
    )
    add(
        "--test-image",
        type=Path,
        metavar="TIF",
        help="TIFF whose first plane becomes the test input; default: the bundled sample "
        "(example: --test-image cells.tif)",
    )
    add(
        "--no-onnx",
        action="store_true",
        help="leave ONNX weights out even if onnx is installed (example: --no-onnx)",
    )
    export.set_defaults(run=run_export)
    return export


def _test_image(path: Path | None) -> Any:
    if path is None:
        return None
    import numpy as np
    import tifffile

    data = np.asarray(tifffile.imread(path))
    while data.ndim > 3 or (data.ndim == 3 and data.shape[-1] > 4):
        data = data[0]  # the first plane of a stack
    return data


def run_export(args: argparse.Namespace) -> int:
    """Export, validate, and print where the package is; return the exit status."""
    from napari_tiled_unet.batch.bioimageio import DEFAULT_LICENSE, export_bioimageio, summary_line

    try:
        path = export_bioimageio(
            args.model,
            args.output,
            name=args.name,
            description=args.description,
            authors=args.authors,
            license=args.license or DEFAULT_LICENSE,
            tags=args.tags,
            documentation=args.readme,
            test_image=_test_image(args.test_image),
            onnx=False if args.no_onnx else None,
        )
        print(f"wrote {path.resolve()}")
        print(summary_line(path))
    except USER_ERRORS as exc:
        return fail(one_line(exc))
    return 0
