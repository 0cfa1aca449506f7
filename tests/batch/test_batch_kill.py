"""Real processes killed with SIGKILL or interrupted with SIGINT, then rerun."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import save_model
from napari_tiled_unet.batch.files import RUN_RECORD
from napari_tiled_unet.batch.run import run_batch
from tests.conftest import tiny_unet

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

NAMES = ("a", "b", "c")
OPTIONS = ["--tile-size", "60", "--probabilities"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    model = save_model(tiny_unet(2, 4), root / "tiny.keras")
    rng = np.random.default_rng(0)
    (root / "in").mkdir()
    for name in NAMES:
        stack = (rng.random((6, 128, 120)) * 60000).astype(np.uint16)
        tifffile.imwrite(root / "in" / f"{name}.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    reference = root / "reference"
    run_batch([root / "in"], reference, model=model, tile_size=60, probabilities=True)
    return root, model, reference


def start(root, model, out):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "napari_tiled_unet.cli.main",
            "segment",
            str(root / "in"),
            "-o",
            str(out),
            "--model",
            str(model),
            "-q",
            *OPTIONS,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before the kill point"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.002)


def partials(out, stem=""):
    return [p for p in out.glob(f".{stem}*.partial")] if out.exists() else []


def recorded_runs(out):
    try:
        return json.loads((out / RUN_RECORD).read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return []


def outputs(out):
    return {p.name: p.read_bytes() for p in out.glob("*.tif")} if out.exists() else {}


def test_sigkill_at_several_points_then_rerun_gives_identical_files(job, tmp_path):
    root, model, reference = job
    expected = outputs(reference)
    out = tmp_path / "out"
    kill_points = [  # (condition, then wait seconds)
        (lambda: bool(partials(out, "a")), 0.3),  # a few planes into the first file
        (lambda: (out / "a_probabilities.tif").exists(), 0.0),  # between files
        (lambda: bool(partials(out, "c")), 0.05),  # early in the last file
    ]
    for number, (point, delay) in enumerate(kill_points):
        process = start(root, model, out)
        # Kill only once this run has started its record: a file finished by an earlier
        # run may already satisfy the condition while this one is still importing.
        wait_for(lambda n=number, p=point: len(recorded_runs(out)) > n and p(), process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        # Whatever exists under a final name is complete and final.
        for name, data in outputs(out).items():
            assert data == expected[name], name
    process = start(root, model, out)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert outputs(out) == expected
    assert not partials(out)  # the killed runs' temporary files were cleaned up
    runs = json.loads((out / RUN_RECORD).read_text())["runs"]
    assert len(runs) == 4 and runs[-1]["status"] == "completed"
    assert [r["status"] for r in runs[:3]] == ["running"] * 3  # killed, never finished
    assert {f["status"] for f in runs[-1]["files"]} <= {"done", "skipped"}


def test_sigint_stops_after_the_plane_in_one_line(job, tmp_path):
    root, model, _ = job
    out = tmp_path / "out"
    process = start(root, model, out)
    wait_for(lambda: bool(partials(out, "a")), process)
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped after the current plane" in lines[0], err
    assert not partials(out) and not list(out.glob("*.tif"))
    runs = json.loads((out / RUN_RECORD).read_text())["runs"]
    assert runs[-1]["status"] == "cancelled"
    assert runs[-1]["files"][0]["status"] == "cancelled"


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_with_dask_workers(job, tmp_path):
    """Ctrl-C goes to the whole process group: workers ignore it, the run stops cleanly."""
    root, model, _ = job
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "napari_tiled_unet.cli.main",
            "segment",
            str(root / "in"),
            "-o",
            str(out),
            "--model",
            str(model),
            "-q",
            "--workers",
            "2",
            *OPTIONS,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(lambda: bool(partials(out, "a")), process, timeout=300)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "stopped after the current plane" in err.strip().splitlines()[-1]
    assert not partials(out)
