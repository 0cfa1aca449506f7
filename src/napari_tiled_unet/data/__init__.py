"""Small real images shipped with the package, for sample data, tests and evaluation.

The files live next to this module; see ``README.md`` in this folder for their origin,
licence and the papers to cite. Only numpy and tifffile are imported here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

__all__ = ["nuclei2d", "nuclei2d_labels_path", "nuclei2d_path"]

# Files are installed as ordinary package data (hatchling copies them into the wheel), so
# they sit on disk beside this module; zip imports are not supported.
_DATA_DIR = Path(__file__).resolve().parent


def nuclei2d_path() -> Path:
    """Return the path of the bundled fluorescent nuclei image.

    Returns
    -------
    pathlib.Path
        ``nuclei2d.tif``: a 512 x 512 single-channel uint16 TIFF (values 0-235) from the
        BBBC038 / 2018 Data Science Bowl training set.

    See Also
    --------
    nuclei2d : Load the image together with its labels.
    """
    return _DATA_DIR / "nuclei2d.tif"


def nuclei2d_labels_path() -> Path:
    """Return the path of the ground-truth instance labels for :func:`nuclei2d_path`.

    Returns
    -------
    pathlib.Path
        ``nuclei2d_labels.tif``: a 512 x 512 uint16 TIFF, 0 for background and one positive
        id per nucleus (125 nuclei; ids are not consecutive).
    """
    return _DATA_DIR / "nuclei2d_labels.tif"


def nuclei2d() -> tuple[np.ndarray, np.ndarray]:
    """Load the bundled fluorescent nuclei image and its ground-truth instance labels.

    Returns
    -------
    image : numpy.ndarray
        Array of shape (512, 512) and dtype uint16 holding 8-bit intensities (0-235),
        exactly as distributed; normalise it before feeding a network.
    labels : numpy.ndarray
        Array of shape (512, 512) and dtype uint16: 0 is background, each of the 125 nuclei
        has its own positive id. Ids range up to 183 with gaps, so relabel them if your
        code needs 1..N.

    Notes
    -----
    The image comes from the stage 1 training set of the 2018 Data Science Bowl (BBBC038,
    CC0), as redistributed with StarDist 0.9.2. Cite Caicedo et al., Nature Methods 16,
    1247-1253 (2019) when you publish results obtained with it.

    Examples
    --------
    >>> from napari_tiled_unet.data import nuclei2d
    >>> image, labels = nuclei2d()
    >>> image.shape, labels.dtype
    ((512, 512), dtype('uint16'))
    """
    image = tifffile.imread(nuclei2d_path())
    labels = tifffile.imread(nuclei2d_labels_path()).astype(np.uint16, copy=False)
    return image, labels
