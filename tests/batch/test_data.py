"""The bundled nuclei sample: files present, values as documented, usable as ground truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_tiled_unet.data import nuclei2d, nuclei2d_labels_path, nuclei2d_path

N_NUCLEI = 125


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    return nuclei2d()


def test_paths_point_to_package_files():
    for path in (nuclei2d_path(), nuclei2d_labels_path()):
        assert path.is_file()
        assert path.suffix == ".tif"
        assert path.parent.name == "data"
        assert (path.parent / "README.md").is_file()


def test_loader_matches_files(sample):
    image, labels = sample
    np.testing.assert_array_equal(image, tifffile.imread(nuclei2d_path()))
    np.testing.assert_array_equal(labels, tifffile.imread(nuclei2d_labels_path()))


def test_image_shape_dtype_and_range(sample):
    image, _ = sample
    assert image.shape == (512, 512)
    assert image.dtype == np.uint16
    assert image.min() == 0
    assert image.max() == 235


def test_labels_are_instance_ids(sample):
    _, labels = sample
    assert labels.shape == (512, 512)
    assert labels.dtype == np.uint16
    ids = np.unique(labels)
    assert ids[0] == 0, "background must be 0"
    assert ids.size - 1 == N_NUCLEI
    assert ids[1:].min() >= 1
    assert ids.max() == 183  # documented: ids have gaps


def test_nuclei_have_plausible_sizes(sample):
    _, labels = sample
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    assert areas.size == N_NUCLEI
    assert areas.min() >= 20
    assert areas.max() <= 1000
    foreground = np.count_nonzero(labels) / labels.size
    assert 0.1 < foreground < 0.3


def test_nuclei_are_brighter_than_background(sample):
    image, labels = sample
    inside = image[labels > 0].astype(np.float64).mean()
    outside = image[labels == 0].astype(np.float64).mean()
    assert inside > 2 * outside


def test_each_nucleus_is_brighter_than_background_on_average(sample):
    image, labels = sample
    sums = np.bincount(labels.ravel(), weights=image.ravel().astype(np.float64))
    counts = np.bincount(labels.ravel())
    present = counts > 0
    means = sums[present] / counts[present]
    background, nuclei = means[0], means[1:]
    # A few dim nuclei exist; most must stand out from the background.
    assert np.mean(nuclei > background) > 0.9


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )


def test_files_read_without_imagecodecs():
    # zlib is decoded by tifffile itself; the optional imagecodecs must not be needed.
    code = (
        "import sys; sys.modules['imagecodecs'] = None\n"
        "from napari_tiled_unet.data import nuclei2d\n"
        "image, labels = nuclei2d()\n"
        "print(image.shape, int(labels.max()))\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(512, 512) 183"


def test_import_is_light():
    code = (
        "import sys\n"
        "import napari_tiled_unet.data\n"
        "heavy = ('tensorflow', 'keras', 'napari', 'qtpy', 'PyQt5', 'PyQt6', 'magicgui')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
