import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import load_model, save_model, segment
from napari_tiled_unet.batch.files import RUN_RECORD
from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.cli.main import main
from tests.conftest import cli_help, tiny_unet


@pytest.fixture
def model_file(tmp_path):
    return save_model(tiny_unet(2, 4), tmp_path / "tiny.keras")


def test_help_is_fast_and_imports_nothing_heavy():
    start = time.perf_counter()
    text, heavy = cli_help("segment")
    wall = time.perf_counter() - start
    assert "--probabilities" in text and "example:" in text
    assert heavy == "[]"
    assert wall < 5  # generous for a loaded CI machine; measured ~0.1 s


def test_export_help_imports_nothing_heavy():
    text, heavy = cli_help("export", ("tensorflow", "keras", "numpy", "bioimageio"))
    assert "--author NAME" in text and "napari-tiled-unet export" in text
    assert heavy == "[]"


def test_segment_writes_labels_and_probabilities(tmp_path, model_file):
    rng = np.random.default_rng(0)
    stack = (rng.random((3, 70, 60)) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "plain.tiff", stack[0])
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "stack.tif"),
                str(tmp_path / "plain.tiff"),
                "-o",
                str(out),
                "--model",
                str(model_file),
                "--probabilities",
            ]
        )
        == 0
    )
    labels = tifffile.imread(out / "stack_labels.tif")
    probs = read_probabilities(out / "stack_probabilities.tif")
    assert labels.shape == (3, 70, 60) and labels.dtype == np.uint8
    assert probs.shape == (3, 70, 60, 2) and probs.dtype == np.float32
    expected = segment(load_model(model_file), stack, axes="ZYX")
    np.testing.assert_allclose(probs, expected.probabilities, atol=1e-5)
    np.testing.assert_array_equal(tifffile.imread(out / "plain_labels.tif"), expected.labels[0])
    assert sorted(p.name for p in out.iterdir()) == [
        RUN_RECORD,
        "plain_labels.tif",
        "plain_probabilities.tif",
        "stack_labels.tif",
        "stack_probabilities.tif",
    ]


def test_cli_runs_as_a_console_script(tmp_path, model_file):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((30, 30), np.uint8))
    exe = [sys.executable, "-m", "napari_tiled_unet.cli.main"]
    done = subprocess.run(
        [
            *exe,
            "segment",
            str(tmp_path / "a.tif"),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(model_file),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "a_labels.tif").exists()


@pytest.mark.parametrize(
    "case", ["no-model", "missing-input", "bad-model", "not-tiff", "bad-axes"]
)
def test_errors_are_one_line_and_leave_nothing(tmp_path, model_file, capsys, case, monkeypatch):
    import napari_tiled_unet.batch.models

    # "no-model" is an error only where no model is bundled; pretend there is none.
    monkeypatch.setattr(napari_tiled_unet.batch.models, "bundled_models", lambda: [])
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((20, 20), np.uint8))
    (tmp_path / "junk.tif").write_text("not a tiff")
    (tmp_path / "junk.keras").write_text("not a model")
    args = {
        "no-model": [str(image)],
        "missing-input": [str(tmp_path / "nope.tif"), "--model", str(model_file)],
        "bad-model": [str(image), "--model", str(tmp_path / "junk.keras")],
        "not-tiff": [str(tmp_path / "junk.tif"), "--model", str(model_file)],
        "bad-axes": [str(image), "--model", str(model_file), "--axes", "ZYX"],
    }[case]
    out = tmp_path / "out"
    assert main(["segment", *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-tiled-unet: error:") and "\n" not in err
    # Usage errors stop before anything is made; a file that fails is in the run record.
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == ([RUN_RECORD] if case in ("not-tiff", "bad-axes") else [])


def test_without_model_the_bundled_one_is_used(tmp_path, model_file, monkeypatch, capsys):
    import napari_tiled_unet.batch.models

    monkeypatch.setattr(napari_tiled_unet.batch.models, "bundled_models", lambda: [model_file])
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((20, 20), np.uint8))
    assert main(["segment", str(tmp_path / "img.tif"), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "img_labels.tif").exists()
    record = (tmp_path / "out" / RUN_RECORD).read_text()
    assert model_file.name in record


def test_warnings_are_one_line(tmp_path, model_file, capsys):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((30, 30), np.uint8))
    args = [str(tmp_path / "img.tif"), "-o", str(tmp_path / "o"), "--model", str(model_file)]
    assert main(["segment", *args, "--tile-size", "61", "-q"]) == 0
    err = capsys.readouterr().err
    line = "napari-tiled-unet: warning: tile size 61 is not valid for a depth-2 U-Net; using the"
    assert line in err and "UserWarning" not in err


def test_help_gives_every_option_an_example():
    from napari_tiled_unet.cli.main import build_parser

    parser = build_parser()
    segment_parser = parser._subparsers._group_actions[0].choices["segment"]
    options = [a for a in segment_parser._actions if a.help and a.dest != "help"]
    wanted = {"overwrite", "workers", "scheduler", "probabilities", "outdir", "labels_output"}
    assert wanted | {"min_size", "min_contrast"} <= {a.dest for a in options}
    assert all("example:" in a.help for a in options), [
        a.dest for a in options if "example:" not in a.help
    ]
    assert "run the same command again" in segment_parser.epilog
    by_dest = {a.dest: a for a in options}
    assert by_dest["labels_output"].default == "auto" and "default: auto" in (
        by_dest["labels_output"].help
    )
    assert by_dest["min_size"].default == 20 and "default: 20" in by_dest["min_size"].help


@pytest.mark.parametrize(
    "bad",
    [
        ["--workers", "0"],
        ["--workers", "2", "--scheduler", "x"],
        ["--min-contrast", "1"],
        ["--min-contrast", "-0.1"],
        ["--min-contrast", "faint"],
        ["--min-size", "-1"],
    ],
)
def test_bad_option_values_are_usage_errors(tmp_path, bad):
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(tmp_path), "-o", str(tmp_path / "o"), *bad])
    assert stop.value.code == 2


def test_a_failed_file_sets_the_exit_status_after_the_others(tmp_path, model_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    good = np.zeros((2, 24, 24), np.uint8)
    tifffile.imwrite(folder / "good.tif", good, imagej=True, metadata={"axes": "ZYX"})
    (folder / "bad.tif").write_bytes(b"II*\0garbage")
    out = tmp_path / "out"
    status = main(["segment", str(folder), "-o", str(out), "--model", str(model_file), "-q"])
    assert status == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("napari-tiled-unet: error: ")
    assert "bad.tif: " in errors[0] and "Error" not in errors[0]
    assert "1 done, 1 failed" in captured.out and str(out / "good_labels.tif") in captured.out
    assert tifffile.imread(out / "good_labels.tif").shape == (2, 24, 24)
    again = main(["segment", str(folder), "-o", str(out), "--model", str(model_file), "-q"])
    assert again == 2 and "1 skipped, 1 failed" in capsys.readouterr().out
