"""The batch engine's TIFF outputs as ImageJ itself reads them (ImageJ under Xvfb).

ImageJ 1.x opens a file and a macro prints its dimensions, pixel type and calibration;
the test compares them with the input's.  ImageJ's headless mode fails on its menus, so
it runs with a virtual display; the test is skipped where Java, ImageJ or xvfb-run is
missing (``tools/test.sh`` installs them on Debian and Ubuntu).
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.batch.run import run_batch
from tests.conftest import tiny_unet

IJ_JAR = Path("/usr/share/java/ij.jar")

pytestmark = pytest.mark.skipif(
    not (IJ_JAR.is_file() and shutil.which("java") and shutil.which("xvfb-run")),
    reason="needs Java, ImageJ (/usr/share/java/ij.jar) and xvfb-run: apt-get install imagej xvfb",
)

# One line per file: name, dimensions, bit depth, voxel size and unit, frame interval.
MACRO = """
files = split(getArgument(), ";");
for (i = 0; i < files.length; i++) {
    open(files[i]);
    getDimensions(width, height, channels, slices, frames);
    getVoxelSize(pw, ph, pd, unit);
    interval = Stack.getFrameInterval();
    print("FILE " + getTitle() + " " + width + " " + height + " " + channels + " " + slices
        + " " + frames + " " + bitDepth() + " " + d2s(pw, 4) + " " + d2s(ph, 4) + " "
        + d2s(pd, 4) + " " + unit + " " + d2s(interval, 4));
    close();
}
"""

# name -> (shape, axes); both written as ImageJ hyperstacks with a calibration.
INPUTS = {"zstack": ((3, 40, 48), "ZYX"), "movie": ((2, 3, 40, 48), "TZYX")}


def imagej_reads(paths, folder):
    """Return ``{file name: fields printed by the macro}`` for every path."""
    macro = folder / "dimensions.ijm"
    macro.write_text(MACRO)
    argument = ";".join(str(p) for p in paths)
    command = ["xvfb-run", "-a", "java", "-jar", str(IJ_JAR), "-batch", str(macro), argument]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=folder)
    lines = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("FILE ")]
    assert len(lines) == len(paths), (done.stdout, done.stderr)
    # ImageJ writes micrometres as "µm" (or "micron"), in the platform's encoding.
    micro = {"µm", "micron", "microns", "Âµm", "um"}
    return {f[0]: [*f[1:10], "um" if f[10] in micro else f[10], *f[11:]] for f in lines}


def test_imagej_reads_labels_and_probabilities_as_calibrated_hyperstacks(tmp_path):
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, (shape, axes) in INPUTS.items():
        tifffile.imwrite(
            inputs / f"{name}.tif",
            (rng.random(shape) * 4000).astype(np.uint16),
            imagej=True,
            resolution=(1 / 0.25, 1 / 0.25),
            metadata={"axes": axes, "unit": "um", "spacing": 1.5, "finterval": 2.0},
        )
    out = tmp_path / "out"
    summary = run_batch([inputs], out, model=tiny_unet(2, 4, num_classes=3), probabilities=True)
    assert summary.ok
    names = [f"{n}_{kind}.tif" for n in INPUTS for kind in ("labels", "probabilities")]
    seen = imagej_reads([out / name for name in names], tmp_path)
    # width height channels slices frames bits pixel-width pixel-height depth unit interval
    calibration = ["0.2500", "0.2500", "1.5000", "um"]
    assert seen["zstack_labels.tif"] == ["48", "40", "1", "3", "1", "16", *calibration, "0.0000"]
    assert seen["zstack_probabilities.tif"] == [
        *("48", "40", "3", "3", "1", "32"),
        *calibration,
        "0.0000",
    ]
    assert seen["movie_labels.tif"] == ["48", "40", "1", "3", "2", "16", *calibration, "2.0000"]
    assert seen["movie_probabilities.tif"] == [
        *("48", "40", "3", "3", "2", "32"),
        *calibration,
        "2.0000",
    ]
    probabilities = read_probabilities(out / "movie_probabilities.tif")
    assert probabilities.shape == (2, 3, 40, 48, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
