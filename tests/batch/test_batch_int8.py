"""int8 in batch runs and on the command line: one calibration per run, the gate recorded."""

import importlib.util
import json

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import load_model, save_model, segment
from napari_tiled_unet.batch.files import RUN_RECORD
from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.batch.run import run_batch
from napari_tiled_unet.cli.main import main
from napari_tiled_unet.core import int8 as int8_module
from napari_tiled_unet.core.cache import CACHE_ENV_VAR
from tests.conftest import lenient_int8_gate, tiny_unet

pytest.importorskip("onnxruntime", reason="int8 needs the onnx extra (onnxruntime)")
# Looked up, not imported: tf2onnx imports TensorFlow, which must come through get_keras.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tf2onnx") is None, reason="int8 needs the onnx extra (tf2onnx)"
)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    lenient_int8_gate(monkeypatch)
    calls = []
    original = int8_module._quantize
    monkeypatch.setattr(int8_module, "_quantize", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        image = (rng.random((70, 64)) * 900).astype(np.uint16)
        image[20:40, 10:30] += 2000
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
    model = save_model(tiny_unet(2, 4, num_classes=3), tmp_path / "tiny.keras")
    return tmp_path, model, calls


def _last_run(out):
    return json.loads((out / RUN_RECORD).read_text())["runs"][-1]


def test_a_batch_calibrates_once_and_records_the_gate(setup):
    folder, model, calls = setup
    inputs = [folder / f"{n}.tif" for n in "abc"]
    summary = run_batch(
        inputs,
        folder / "out",
        model=model,
        precision="int8",
        probabilities=True,
        output="classes",
    )
    assert summary.ok and summary.count("done") == 3 and calls == [1]
    run = _last_run(folder / "out")
    assert run["int8"]["used"] == "int8" and run["int8"]["held_out"] == 4
    assert run["int8"]["summary"].startswith(f"{100 * run['int8']['agreement']:.2f} %")
    for entry in run["files"]:
        assert entry["details"]["precision"] == "int8"
        assert entry["details"]["runtime"] == "onnxruntime"  # the estimate and what ran
        assert entry["details"]["activation_estimate_runtime"] == "onnxruntime"
        assert entry["details"]["activation_estimate_bytes"] > 0
        assert entry["details"]["int8"]["key"] == run["int8"]["key"]
    probs = read_probabilities(folder / "out" / "b_probabilities.tif")
    reference = segment(load_model(model), tifffile.imread(inputs[1])).probabilities
    assert probs.shape == reference.shape and probs.dtype == np.float32
    assert 0 < np.abs(probs - reference).max() < 0.3  # int8, near float32
    run_batch(inputs, folder / "again", model=model, precision="int8")
    assert calls == [1] and _last_run(folder / "again")["int8"]["cached"] is True


def test_int8_refuses_dask_workers_in_one_line(setup):
    folder, model, _ = setup
    with pytest.raises(ValueError, match="int8 runs in this process only") as info:
        run_batch([folder / "a.tif"], folder / "out", model=model, precision="int8", workers=2)
    assert "\n" not in str(info.value) and not (folder / "out").exists()


def test_cli_accepts_precision_int8(setup, capsys):
    folder, model, calls = setup
    out = folder / "out"
    argv = ["segment", str(folder / "a.tif"), "-o", str(out), "--model", str(model), "-q"]
    assert main([*argv, "--precision", "int8"]) == 0
    err = capsys.readouterr().err
    assert err.count("napari-tiled-unet: int8: ") == 1 and "warning" not in err
    run = _last_run(out)
    assert run["parameters"]["precision"] == "int8" and run["int8"]["used"] == "int8"
    assert calls == [1]


def test_cli_int8_fallback_is_one_warning(setup, capsys, monkeypatch):
    folder, model, _ = setup
    monkeypatch.setattr(int8_module, "MIN_AGREEMENT", 1.01)
    monkeypatch.setattr(int8_module, "_fallback", lambda: "float32")
    out = folder / "out"
    argv = ["segment", str(folder / "a.tif"), str(folder / "b.tif"), "-o", str(out), "-q"]
    assert main([*argv, "--model", str(model), "--precision", "int8"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: int8 does not agree well enough") == 1
    details = _last_run(out)["files"][1]["details"]
    assert details["precision"] == "float32" and details["runtime"] == "tensorflow"
    assert details["activation_estimate_runtime"] == "tensorflow"  # planned for what runs
