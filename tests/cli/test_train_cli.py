"""The ``train`` subcommand: options, end-to-end training from TIFFs, one-line errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import load_model, segment
from napari_tiled_unet.batch.training import read_training_pairs
from napari_tiled_unet.cli.train import add_train_parser
from tests.core.test_trainer import _squares

TINY = ["--depth", "1", "--base-filters", "4", "--tile-size", "40", "--batch-size", "2"]


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="napari-tiled-unet")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, seed in (("a", 0), ("b", 1), ("v", 9)):
        image, labels = _squares(seed)
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / f"{name}_labels.tif", labels.astype(np.uint16))
        paths[name] = (str(tmp_path / f"{name}.tif"), str(tmp_path / f"{name}_labels.tif"))
    return paths


def test_help_has_the_example_and_imports_nothing_heavy() -> None:
    code = (
        "import argparse, sys\nfrom napari_tiled_unet.cli.train import add_train_parser\n"
        "p = argparse.ArgumentParser(); add_train_parser(p.add_subparsers())\n"
        "try:\n    p.parse_args(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', [m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "example:" in out.stdout and "--val-images" in out.stdout and "--init" in out.stdout
    assert "HEAVY []" in out.stdout


def test_train_writes_a_model_that_loads_and_segments(tmp_path, files, capsys) -> None:
    out = tmp_path / "model.keras"
    argv = [
        "train",
        "--images",
        files["a"][0],
        files["b"][0],
        "--labels",
        files["a"][1],
        files["b"][1],
        "--val-images",
        files["v"][0],
        "--val-labels",
        files["v"][1],
        "-o",
        str(out),
        "--classes",
        "3",
        "--steps",
        "5",
        "--epochs",
        "2",
        *TINY,
    ]
    assert _main(argv) == 0
    captured = capsys.readouterr()
    assert "epoch 2/2: loss" in captured.err and "val_iou" in captured.err
    assert captured.out.strip() == str(out)
    model = load_model(out)
    meta = model.metadata
    assert (meta.num_classes, meta.depth, meta.base_filters) == (3, 1, 4)
    assert meta.class_names == ("background", "interior", "border")
    assert meta.training["config"]["steps_per_epoch"] == 5
    assert meta.training["train_shapes"] == [[64, 64, 1], [64, 64, 1]]
    result = segment(model, tifffile.imread(files["v"][0]))
    assert result.probabilities.shape == (64, 64, 3)
    # Fine-tune: --init reuses the model's shape without repeating it.
    again = tmp_path / "tuned.keras"
    argv = [
        "train",
        "--images",
        files["a"][0],
        "--labels",
        files["a"][1],
        "-o",
        str(again),
        "--init",
        str(out),
        "--steps",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "1",
    ]
    assert _main(argv) == 0
    tuned = load_model(again).metadata
    assert (tuned.num_classes, tuned.depth, tuned.base_filters) == (3, 1, 4)
    assert tuned.training["steps"] == meta.training["steps"] + 2
    assert tuned.training["init"] == out.name  # the name only, never the folders


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f, t: ["--labels", f["a"][1], f["b"][1]], "1 images but 2 --labels"),
        (lambda f, t: ["--images", str(t / "nope.tif")], "file not found"),
        (lambda f, t: ["-o", str(t / "m.h5")], ".keras"),
        (
            lambda f, t: ["--labels", _write(t / "f.tif", np.zeros((64, 64), np.float32))],
            "integer",
        ),
        (lambda f, t: ["--labels", _write(t / "s.tif", np.zeros((50, 64), np.uint8))], "shape"),
        (lambda f, t: ["--tile-size", "41"], "not valid"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, files, capsys, change, message) -> None:
    options = {
        "--images": [files["a"][0]],
        "--labels": [files["a"][1]],
        "-o": [str(tmp_path / "m.keras")],
    }
    extra = change(files, tmp_path)
    options[extra[0]] = extra[1:]
    argv = ["train", *TINY, "--steps", "1", "--epochs", "1"]
    for flag, values in options.items():
        argv += [flag, *values]
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-tiled-unet: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "m.keras").exists()


def _write(path, data) -> str:
    tifffile.imwrite(path, data)
    return str(path)


def test_read_training_pairs_splits_stacks_and_moves_channels(tmp_path) -> None:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    labels = rng.integers(0, 4, (3, 20, 30), dtype=np.uint16)
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "zl.tif", labels, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "l.tif", labels[0])
    tifffile.imwrite(tmp_path / "m.tif", (labels[0] == 1).astype(np.uint8))
    images, labs, masks = read_training_pairs(
        [tmp_path / "z.tif", tmp_path / "rgb.tif"],
        [tmp_path / "zl.tif", tmp_path / "l.tif"],
        [tmp_path / "zl.tif", tmp_path / "m.tif"],
    )
    assert [i.shape for i in images] == [(20, 30, 1)] * 3 + [(20, 30, 3)]
    np.testing.assert_array_equal(images[1][..., 0], stack[1])
    np.testing.assert_array_equal(images[3], rgb)
    np.testing.assert_array_equal(labs[2], labels[2])
    assert masks is not None and masks[3].dtype == bool
    np.testing.assert_array_equal(masks[3], labels[0] == 1)
