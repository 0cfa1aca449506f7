"""The Batch dock widget in a real napari viewer (Xvfb): wiring, not math.

The batch engine itself (outputs, resume, cancel, run record) is tested in test_batch.py;
these tests check that the widget drives it with the chosen options, reports what happened
and opens what it wrote.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import save_model, segment
from napari_tiled_unet._widgets._batch_text import (
    batch_inputs,
    progress_line,
    summary_line,
    summary_rows,
)
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.batch.events import FileResult, PlaneProgress
from napari_tiled_unet.batch.files import RUN_RECORD
from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.core.model.files import UNetModel
from tests.conftest import tiny_unet

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("user_folders")]

SHAPES = {"a_stack": (3, 48, 40), "b_stack": (2, 40, 56)}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    garbage = folder / "garbage.keras"
    garbage.write_bytes(b"this is not a model")
    return {"tiny": save_model(tiny_unet(2, 4), folder / "tiny.keras"), "garbage": garbage}


def write_inputs(folder, shapes=SHAPES):
    """ImageJ stacks (0.5 um pixels, 2 um apart) and a text file; return the stacks."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    stacks = {}
    for name, shape in shapes.items():
        stacks[name] = (rng.random(shape) * 1000).astype(np.float32)
        tifffile.imwrite(
            folder / f"{name}.tif",
            stacks[name],
            imagej=True,
            resolution=(2.0, 2.0),
            metadata={"axes": "ZYX", "unit": "um", "spacing": 2.0},
        )
    (folder / "notes.txt").write_text("not an image")
    return stacks


def open_widget(viewer, inputs=None, outdir=None, model=None):
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Batch")
    if inputs is not None:
        widget.input_folder.value = inputs
    if outdir is not None:
        widget.output_folder.value = outdir
    if model is not None:
        widget.model_file.value = model
    return widget


def run_and_wait(qtbot, widget, timeout=30_000):
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def table(widget):
    return [tuple(cell or "" for cell in row) for row in widget.results.data.to_list()]


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def test_runs_from_the_manifest_reports_and_skips_on_rerun(
    make_napari_viewer, qtbot, model_files, tmp_path
):
    from napari.utils import progress

    stacks = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    widget = open_widget(make_napari_viewer(), tmp_path / "in", out, model_files["tiny"])
    widget.probabilities.value, widget.probability_dtype.value = True, "float16"
    statuses: list[str] = []
    bars: list[tuple[str, int]] = []

    def watch(_):  # after the widget's own handler
        statuses.append(widget.status.value)
        bars.extend((bar.desc.removesuffix(": "), bar.total) for bar in progress._all_instances)

    widget.run()
    widget.worker.yielded.connect(watch)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert widget.summary.value == "2 done, 0 skipped, 1 failed"
    rows = table(widget)
    assert rows[0][:2] == ("notes.txt", "failed") and "not a readable TIFF" in rows[0][2]
    assert rows[1:] == [("a_stack.tif", "done", ""), ("b_stack.tif", "done", "")]
    failed = next(r for r in widget._table.files if r.status == "failed")
    widget.results.native.selectRow(0)  # the error in full, to read and copy
    assert widget.details.value == f"{failed.input}\nfailed: {failed.message}"
    assert widget.results.native.item(0, 2).toolTip() == failed.message
    assert widget.results.native.wordWrap()
    assert widget.status.value.startswith("Finished in")
    assert "file 1/3: a_stack.tif plane 3/3" in statuses
    assert ("U-Net batch: files", 3) in bars
    assert ("file 1/3: a_stack.tif", 3) in bars  # 3 planes of 1 tile
    assert not progress._all_instances  # closed at the end
    assert files_in(out) == [
        *("a_stack_labels.tif", "a_stack_probabilities.tif"),
        *("b_stack_labels.tif", "b_stack_probabilities.tif", RUN_RECORD),
    ]
    for name, stack in stacks.items():
        expected = segment(tiny_unet(2, 4), stack, axes="ZYX")
        np.testing.assert_array_equal(tifffile.imread(out / f"{name}_labels.tif"), expected.labels)
        probabilities = read_probabilities(out / f"{name}_probabilities.tif")
        assert probabilities.dtype == np.float16 and probabilities.shape == (*SHAPES[name], 2)
    run = json.loads((out / RUN_RECORD).read_text())["runs"][-1]
    assert run["source"] == "napari" and run["parameters"]["probability_dtype"] == "float16"
    run_and_wait(qtbot, widget)
    assert widget.summary.value == "0 done, 2 skipped, 1 failed"
    assert [row[1] for row in table(widget)] == ["failed", "skipped", "skipped"]
    widget.overwrite.value = True
    run_and_wait(qtbot, widget)
    assert widget.summary.value == "2 done, 0 skipped, 1 failed"


def test_cancel_stops_after_the_current_plane_and_leaves_no_partial_files(
    make_napari_viewer, qtbot, model_files, tmp_path, monkeypatch
):
    write_inputs(tmp_path / "in", {"a_long": (8, 48, 40), "b_short": (2, 48, 40)})
    out = tmp_path / "out"
    widget = open_widget(make_napari_viewer(), tmp_path / "in", out, model_files["tiny"])
    widget.pattern.value = "*.tif"
    original = UNetModel.predict_batch

    def slow(self, batch):
        time.sleep(0.15)
        return original(self, batch)

    widget.run()
    widget.cancel()  # while the model loads
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert widget.status.value == "Cancelled before the first file; nothing was written."
    assert not out.exists()
    monkeypatch.setattr(UNetModel, "predict_batch", slow)
    planes = []

    def cancel_at_first_plane(event):
        if isinstance(event, PlaneProgress):
            planes.append(event.plane)
            widget.cancel()

    widget.run()
    widget.worker.yielded.connect(cancel_at_first_plane)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert 1 <= len(planes) <= 3, planes  # the plane in flight finishes, no more
    assert widget.status.value == (
        "Cancelled (0 done, 0 skipped, 0 failed, 1 cancelled); nothing half-written is left."
    )
    assert widget.summary.value == "0 done, 0 skipped, 0 failed, 1 cancelled"
    assert table(widget) == [("a_long.tif", "cancelled", "stopped; rerun to redo this file")]
    assert files_in(out) == [RUN_RECORD]  # no labels, no hidden partial file
    assert json.loads((out / RUN_RECORD).read_text())["runs"][-1]["status"] == "cancelled"
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert not widget.open_button.enabled
    monkeypatch.setattr(UNetModel, "predict_batch", original)
    run_and_wait(qtbot, widget)  # the model is not loaded again, the run resumes
    assert widget.summary.value == "2 done, 0 skipped, 0 failed"


def test_open_result_adds_the_image_and_its_labels(
    make_napari_viewer, qtbot, model_files, tmp_path, notes
):
    from napari.layers import Image, Labels

    stacks = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    viewer = make_napari_viewer()
    widget = open_widget(viewer, tmp_path / "in", out, model_files["tiny"])
    run_and_wait(qtbot, widget)
    assert widget.selected_result().input.endswith("a_stack.tif")  # first one that opens
    assert widget.open_button.enabled
    widget.results.native.selectRow(2)  # b_stack
    widget.open_button.clicked.emit()
    qtbot.waitUntil(lambda: "b_stack [unet labels]" in viewer.layers, timeout=10_000)
    labels, image = viewer.layers["b_stack [unet labels]"], viewer.layers["b_stack"]
    assert isinstance(labels, Labels) and isinstance(image, Image)
    assert labels.data.shape == image.data.shape == SHAPES["b_stack"]
    np.testing.assert_array_equal(labels.data, tifffile.imread(out / "b_stack_labels.tif"))
    np.testing.assert_array_equal(image.data, stacks["b_stack"])
    np.testing.assert_allclose(labels.scale, (2.0, 0.5, 0.5))
    np.testing.assert_allclose(image.scale, (2.0, 0.5, 0.5))
    widget.open_result()  # again: the same layers are reused
    qtbot.wait(500)
    assert [layer.name for layer in viewer.layers] == ["b_stack", "b_stack [unet labels]"]
    widget.results.native.selectRow(0)  # notes.txt failed: nothing to open
    assert not widget.open_button.enabled
    widget.open_result()
    message = "notes.txt has no labels to open; choose a done or skipped file."
    assert notes[-1] == ("error", message)


def test_user_mistakes_are_one_sentence_notifications(
    make_napari_viewer, qtbot, model_files, tmp_path, notes
):
    write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    widget = open_widget(make_napari_viewer())
    widget.open_result()
    assert notes[-1] == ("error", "Choose a file in the table first (after a run).")

    def attempt(expected):
        before = len(notes)
        run_and_wait(qtbot, widget)
        errors = [m for s, m in notes[before:] if s == "error"]
        assert len(errors) == 1 and expected in errors[0], (expected, errors)
        assert errors[0].endswith(".") and "\n" not in errors[0] and "Traceback" not in errors[0]
        assert widget.run_button.enabled and widget.status.value == errors[0]

    attempt("No input: choose an input folder")
    widget.pattern.value = "*.tif"
    attempt("The pattern *.tif needs an input folder")
    widget.input_folder.value = tmp_path / "in"
    attempt("No output folder")
    widget.output_folder.value = out
    attempt("No model chosen")
    widget.model_file.value = model_files["garbage"]
    attempt("garbage.keras is not a Keras model file")
    widget.model_file.value = model_files["tiny"]
    widget.pattern.value = "*.png"
    attempt("*.png: no file matches this pattern; check the input folder and Files")
    assert not out.exists()  # nothing was started


def test_parameters_persist_and_restore_defaults(make_napari_viewer, model_files, tmp_path):
    widget = open_widget(make_napari_viewer(), tmp_path / "in", tmp_path / "out")
    widget.model_file.value = model_files["tiny"]
    widget.pattern.value = "*.tif"
    widget.axes.value = "ZYX"
    widget.tile_auto.value, widget.tile_size.value = False, 200
    widget.normalize.value = "none"
    widget.probabilities.value, widget.probability_dtype.value = True, "float16"
    widget.overwrite.value = True
    stored = json.loads((tmp_path / "batch.json").read_text())
    assert stored.pop("version") == _settings.SETTINGS_VERSION  # the file's format
    assert set(stored) == set(_settings.BATCH_DEFAULTS)
    assert stored["input_folder"] == str(tmp_path / "in") and stored["tile_size"] == 200
    assert stored["model"] == str(model_files["tiny"].resolve())
    again = open_widget(make_napari_viewer())
    assert again.persistent_values() == stored
    assert again.tile_size.enabled and again.probability_dtype.enabled
    again.defaults_button.clicked.emit()
    assert again.folder("input_folder") == "" and again.pattern.value == ""
    assert again.tile_auto.value and not again.tile_size.enabled
    assert (again.normalize.value, again.overwrite.value) == ("as the model was trained", False)
    assert not again.probability_dtype.enabled
    stored = json.loads((tmp_path / "batch.json").read_text())
    assert {k: v for k, v in stored.items() if k not in ("model", "version")} == {
        k: v for k, v in _settings.BATCH_DEFAULTS.items() if k != "model"
    }


def test_inputs_from_a_folder_and_a_pattern(tmp_path):
    assert batch_inputs(str(tmp_path), "") == (str(tmp_path),)
    assert batch_inputs(f" {tmp_path} ", " *.tif ") == (str(tmp_path / "*.tif"),)
    assert batch_inputs(str(tmp_path), "/data/exp1/*.tif") == ("/data/exp1/*.tif",)
    assert batch_inputs("", "/data/exp1/*.tif") == ("/data/exp1/*.tif",)
    with pytest.raises(ValueError, match=r"^no input: choose an input folder"):
        batch_inputs("", " ")
    with pytest.raises(ValueError, match=r"^the pattern a/\*\.tif needs an input folder"):
        batch_inputs("", "a/*.tif")


def test_status_and_summary_texts(tmp_path):
    event = PlaneProgress(2, 10, tmp_path / "stack.tif", 4, 32, 3, 9)
    assert progress_line(event) == "file 3/10: stack.tif plane 5/32, tile 3/9"
    assert progress_line(PlaneProgress(0, 1, tmp_path / "a.tif", 0, 1, 1, 1)) == (
        "file 1/1: a.tif plane 1/1"
    )
    results = [
        FileResult("a.tif", "done"),
        FileResult("b.tif", "skipped"),
        FileResult("c.txt", "failed", "not a readable TIFF file"),
        FileResult("d.tif", "done"),
    ]
    assert summary_line(results) == "2 done, 1 skipped, 1 failed"
    assert [r.input for r in summary_rows(results)] == ["c.txt", "a.tif", "d.tif", "b.tif"]


def test_widget_module_does_not_import_tensorflow():
    code = (
        "import sys, napari_tiled_unet._widgets.batch; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]"


def test_int8_is_a_precision_choice(make_napari_viewer):
    widget = open_widget(make_napari_viewer())
    assert "int8" in widget.precision.choices
    widget.precision.value = "int8"
    assert widget.precision.value == "int8"
