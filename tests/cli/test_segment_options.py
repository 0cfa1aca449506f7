"""The command line's precision, memory, augmentation and thread options."""

import json

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import load_model, save_model, segment
from napari_tiled_unet.batch.files import RUN_RECORD
from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.cli.main import main
from napari_tiled_unet.core import precision as precision_module
from tests.conftest import tiny_unet


@pytest.fixture
def model_file(tmp_path):
    return save_model(tiny_unet(2, 4), tmp_path / "tiny.keras")


def _last_run(out):
    return json.loads((out / RUN_RECORD).read_text())["runs"][-1]


def test_precision_budget_and_tta_reach_the_outputs_and_the_record(
    tmp_path, model_file, monkeypatch
):
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)
    image = (np.random.default_rng(0).random((90, 80)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    argv = ["segment", str(tmp_path / "a.tif"), "-o", str(out), "--model", str(model_file)]
    options = ["--precision", "bfloat16", "--memory-budget", "300MB", "--tta", "flips"]
    assert main([*argv, *options, "--probabilities", "--output", "classes"]) == 0
    run = _last_run(out)
    assert run["parameters"]["precision"] == "bfloat16"
    assert run["parameters"]["memory_budget"] == 300 * 10**6
    assert run["parameters"]["tta"] == "flips"
    details = run["files"][0]["details"]
    assert details["precision"] == "bfloat16" and details["network_passes_per_tile"] == 4
    assert details["tta"] == ["identity", "flip_y", "flip_x", "rot180"]
    assert details["memory_budget_bytes"] == 300 * 10**6
    assert 0 < details["activation_estimate_bytes"] <= 300 * 10**6
    assert details["memory_fallback"] is None
    assert details["tile_chosen_by"] == "flops"  # nothing tuned for this network
    expected = segment(
        load_model(model_file), image, precision="bfloat16", tta="flips", memory_budget="300MB"
    )
    probs = read_probabilities(out / "a_probabilities.tif")  # classes last
    np.testing.assert_allclose(probs, expected.probabilities, atol=1e-5)


def test_unsupported_precision_falls_back_with_one_line(tmp_path, model_file, capsys, monkeypatch):
    monkeypatch.setattr(precision_module, "_has_gpu", lambda: False)
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((40, 40), np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", np.ones((40, 40), np.uint8))
    out = tmp_path / "out"
    argv = [str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out), "-q"]
    assert main(["segment", *argv, "--model", str(model_file), "--precision", "float16"]) == 0
    err = capsys.readouterr().err
    assert err.count("precision float16 needs a GPU") == 1
    assert "using float32" in err and "Traceback" not in err
    assert _last_run(out)["files"][0]["details"]["precision"] == "float32"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--memory-budget", "lots", "cannot read the memory size 'lots'"),
        ("--precision", "int4", "invalid choice: 'int4'"),
        ("--threads", "0", "must be at least 1"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, model_file, capsys, option, value, message):
    argv = ["segment", str(tmp_path), "-o", str(tmp_path / "o"), "--model", str(model_file)]
    with pytest.raises(SystemExit) as stop:
        main([*argv, option, value])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_tta_transform_is_a_one_line_error(tmp_path, model_file, capsys):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((40, 40), np.uint8))
    argv = ["segment", str(tmp_path / "a.tif"), "-o", str(tmp_path / "o")]
    assert main([*argv, "--model", str(model_file), "--tta", "mirror"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tta must be True, 'all', 'flips' or names" in err and len(err.splitlines()) == 1


def test_help_states_the_cost_of_tta(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--tta makes the network time 8x" in text
    assert "--memory-budget SIZE" in text and "--threads N" in text
