"""The Train dock widget in a real napari viewer (Xvfb): wiring, not math.

The trainer and the weight map are tested in the core (test_train*.py, test_weightmap.py);
these tests check that the widget hands the core the right data, shows its progress, saves
the model where the Segment widget finds it, and keeps the checkpoint on Cancel.  Models are
tiny (depth 1, 2 filters) and runs short (a few steps of 64 x 64 tiles).
"""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_tiled_unet import save_model
from napari_tiled_unet._widgets import _workers
from napari_tiled_unet._widgets._train_text import parse_learning_rate
from napari_tiled_unet._widgets.train import TrainWidget
from napari_tiled_unet.batch import models
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.batch.models import model_target
from napari_tiled_unet.core.model.builder import build_unet
from napari_tiled_unet.core.model.files import load_model
from napari_tiled_unet.core.train import trainer
from napari_tiled_unet.core.train.config import TrainProgress
from napari_tiled_unet.core.train.planes import Pair, training_planes
from napari_tiled_unet.core.train.weightmap import weight_map

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("user_folders")]


@pytest.fixture
def slow_steps(monkeypatch):
    """Make every training step last at least 0.4 s, so that Cancel lands where it is meant."""
    original = trainer._train_step

    def slow(run):
        time.sleep(0.4)
        return original(run)

    monkeypatch.setattr(trainer, "_train_step", slow)


def blobs(seed=0, shape=(64, 64)):
    """A noisy image with a few bright square objects, and their instance labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for index, (y, x) in enumerate(rng.integers(4, min(shape) - 14, size=(5, 2)), start=1):
        labels[y : y + 9, x : x + 9] = index
    image = (labels > 0) + 0.3 * rng.random(shape)
    return image.astype(np.float32), labels


def open_train(viewer, **values):
    """Dock a Train widget with a tiny network and a short schedule (overridable)."""
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    settings = {"classes": 2, "depth": 1, "base_filters": 2, "steps": 3, "epochs": 2}
    for key, value in {**settings, "model_name": "tiny", **values}.items():
        getattr(widget, key).value = value
    return widget


def shown(field):
    """Whether a form field is meant to be seen (the viewer window itself may be hidden)."""
    return not field.native.isHidden()


def training_bars():
    """The Train widget's bars in napari's activity dock."""
    from napari.utils import progress

    return [bar for bar in progress._all_instances if bar.desc.startswith("U-Net training")]


def wait(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_trains_with_progress_and_the_model_appears_in_segment_at_once(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    image, labels = blobs(0)
    val_image, val_labels = blobs(1)
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells labels")
    viewer.add_image(val_image, name="val")
    viewer.add_labels(val_labels, name="val labels")
    _, segment = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    assert segment.model.value == ""  # no model yet
    widget = open_train(viewer)
    widget.image.value = viewer.layers["cells"]
    widget.labels_layer.value = viewer.layers["cells labels"]
    widget.val_image.value = viewer.layers["val"]
    widget.val_labels.value = viewer.layers["val labels"]
    seen = []

    def record(event):
        (bar,) = training_bars()
        seen.append((event, widget.status.value, bar.n, bar.total))

    widget.train()
    assert not widget.train_button.enabled and widget.cancel_button.enabled
    widget.worker.yielded.connect(record)
    wait(qtbot, widget)
    target = tmp_path / "models" / "tiny.keras"
    assert target.is_file()
    assert segment.model.value == str(target)  # listed (and chosen) without any refresh
    assert segment.model_info.value.startswith("1 channel -> 2 classes")
    saved = load_model(target).metadata
    assert (saved.num_classes, saved.depth, saved.base_filters) == (2, 1, 2)
    history = saved.training["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all("val_iou" in h for h in history)
    assert [step for step, _ in widget.plot.loss_points] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in widget.plot.val_iou_points] == [3, 6]
    assert len(widget.plot.val_loss_points) == 2
    assert [n for *_, n, total in seen] == [1, 2, 3, 3, 4, 5, 6, 6] and seen[0][3] == 6
    assert seen[0][1].startswith("Epoch 1/2, step 1/6: loss ") and "left." in seen[0][1]
    assert "val IoU" in seen[-1][1]
    assert widget.status.value.startswith("Done: 6 steps in ")
    assert "saved as tiny.keras" in widget.status.value
    assert widget.target_info.value.startswith("\u26a0 a model called 'tiny.keras' exists")
    assert widget.train_button.enabled and not widget.cancel_button.enabled
    assert training_bars() == []  # closed
    widget.plot.grab()  # the plot draws with data


def test_cancel_before_the_first_epoch_saves_nothing_and_train_works_again(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, slow_steps
):
    viewer = make_napari_viewer()
    image, labels = blobs(2)
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells labels")
    widget = open_train(viewer, steps=5)
    events = []

    def cancel_once(event):
        if not events:
            widget.cancel()
        events.append(event)

    widget.train()
    widget.worker.yielded.connect(cancel_once)
    wait(qtbot, widget)
    target = tmp_path / "models" / "tiny.keras"
    assert not target.exists()
    assert not any(event.epoch_end for event in events)
    assert widget.status.value.startswith("Cancelled at step ")
    assert widget.status.value.endswith("before the first epoch ended; nothing was saved.")
    assert len(widget.plot.loss_points) == len(events) <= 2
    assert widget.train_button.enabled and not widget.cancel_button.enabled
    monkeypatch.undo()  # fast steps again (and the user folders: set them anew)
    monkeypatch.setenv(models.MODELS_ENV_VAR, str(tmp_path / "models"))
    monkeypatch.setattr(_settings, "train_settings_path", lambda: tmp_path / "train.json")
    widget.steps.value, widget.epochs.value = 2, 1
    widget.train()
    wait(qtbot, widget)
    assert target.is_file() and widget.status.value.startswith("Done: 2 steps")
    assert len(widget.plot.loss_points) == 2  # a new run starts a new plot


def test_fine_tune_starts_from_the_chosen_model_and_cancel_keeps_the_checkpoint(
    make_napari_viewer, qtbot, tmp_path, slow_steps
):
    start = build_unet(depth=1, base_filters=2, num_classes=2, seed=7)
    start_file = save_model(start, tmp_path / "models" / "start.keras")
    fresh = build_unet(depth=1, base_filters=2, num_classes=2, seed=0)  # what "new" builds
    assert not np.allclose(fresh.get_weights()[0], start.get_weights()[0])
    viewer = make_napari_viewer()
    image, labels = blobs(3)
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells labels")
    widget = open_train(viewer, steps=2, epochs=3, model_name="tuned")
    widget.classes.value, widget.depth.value = 3, 3  # ignored: the model's shape counts
    widget.start.value = "fine-tune"
    assert not shown(widget.shape_row) and shown(widget.model)
    widget.model.value = str(start_file)
    assert widget.model_info.value.startswith("1 channel -> 2 classes")
    widget.learning_rate.value = "1e-9"  # the weights stay those of the chosen model

    def cancel_after_first_epoch(event):
        if event.epoch_end and widget.cancel_button.enabled:
            widget.cancel()

    widget.train()
    widget.worker.yielded.connect(cancel_after_first_epoch)
    wait(qtbot, widget)
    target = tmp_path / "models" / "tuned.keras"
    assert widget.status.value.startswith("Cancelled at step ")
    assert widget.status.value.endswith("tuned.keras holds the model (epoch 1).")
    tuned = load_model(target)
    record = tuned.metadata.training
    assert record["init"] == start_file.name and record["epochs_done"] == 1
    assert record["steps"] == 2 and record["config"]["learning_rate"] == 1e-9
    assert (tuned.metadata.num_classes, tuned.metadata.depth) == (2, 1)
    for before, after in zip(start.get_weights(), tuned.keras_model.get_weights()):
        np.testing.assert_allclose(after, before, atol=1e-6)
    assert str(target) in widget.model.choices  # the fine-tune list is refreshed too
    assert widget.train_button.enabled


def test_weight_map_layer_matches_the_labels_place_and_updates(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, labels = blobs(4)
    stack = np.stack([labels, np.zeros_like(labels), labels[::-1]])
    viewer.add_labels(labels, name="cells", scale=(2.0, 3.0), translate=(5.0, -1.0))
    viewer.add_labels(stack, name="stack", scale=(4.0, 1.0, 1.0))
    widget = open_train(viewer)
    widget.labels_layer.value = viewer.layers["cells"]
    widget.weight_map_button.clicked.emit()
    qtbot.waitUntil(lambda: "cells [weight map]" in viewer.layers, timeout=10_000)
    layer = viewer.layers["cells [weight map]"]
    expected = weight_map(labels, w0=10.0, sigma=5.0, n_classes=2)
    assert layer.data.shape == (64, 64) and layer.data.dtype == np.float32
    np.testing.assert_array_equal(layer.data, expected)
    np.testing.assert_allclose(layer.scale, (2.0, 3.0))
    np.testing.assert_allclose(layer.translate, (5.0, -1.0))
    # Under the labels it was made from, translucent: the data stay in sight.
    names = [each.name for each in viewer.layers]
    assert names.index("cells [weight map]") == names.index("cells") - 1
    assert layer.blending == "additive" and layer.opacity == pytest.approx(0.5)
    assert layer not in [value for _, value in widget._image_choices()]  # not training data
    widget.w0.value, widget.classes.value = 0.0, 3
    widget.weight_map_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.weight_map_button.enabled, timeout=10_000)
    assert viewer.layers["cells [weight map]"] is layer
    np.testing.assert_array_equal(layer.data, weight_map(labels, w0=0.0, n_classes=3))
    widget.labels_layer.value = viewer.layers["stack"]
    widget.weight_map_button.clicked.emit()
    qtbot.waitUntil(lambda: "stack [weight map]" in viewer.layers, timeout=10_000)
    planes = viewer.layers["stack [weight map]"]
    assert planes.data.shape == (3, 64, 64)
    np.testing.assert_allclose(planes.scale, (4.0, 1.0, 1.0))
    np.testing.assert_array_equal(planes.data[2], weight_map(stack[2], w0=0.0, n_classes=3))


def fake_steps(jobs):
    """A stand-in for the training worker: records the job, reports 2 steps, saves nothing."""

    def steps(job, stop):
        jobs.append(job)
        for step in (1, 2):
            yield TrainProgress(1, 1, step, 2, 1.0 / step, elapsed=step)
        return job.target

    return steps


def test_pairs_and_stacks_become_training_planes(make_napari_viewer, qtbot, monkeypatch):
    from napari_tiled_unet._widgets import train

    jobs = []
    monkeypatch.setattr(train, "train_steps", fake_steps(jobs))
    viewer = make_napari_viewer()
    image, labels = blobs(5)
    rgb = np.stack([image] * 3, axis=-1)
    stack, stack_labels = np.stack([image] * 3), np.stack([labels, 0 * labels, labels])
    viewer.add_image(rgb, name="rgb", rgb=True)
    viewer.add_labels(labels, name="rgb labels")
    viewer.add_image(stack, name="stack")
    viewer.add_labels(stack_labels, name="stack labels")
    widget = open_train(viewer)
    widget.image.value = viewer.layers["stack"]
    widget.labels_layer.value = viewer.layers["stack labels"]
    widget.train()  # no pairs added: the Image and Labels above
    wait(qtbot, widget)
    assert len(jobs[-1].images) == 2 and jobs[-1].images[0].shape == (64, 64)  # 2 of 3 planes
    assert widget.pairs_info.value.startswith("No pairs added")
    widget.add_current_pair()
    widget.add_current_pair()  # twice: listed once
    widget.image.value = viewer.layers["rgb"]
    widget.labels_layer.value = viewer.layers["rgb labels"]
    widget.add_current_pair()
    assert widget.pairs.choices == (
        (viewer.layers["stack"], viewer.layers["stack labels"], None),
        (viewer.layers["rgb"], viewer.layers["rgb labels"], None),
    )
    assert widget.pairs_info.value == "Trains on 2 pairs."
    assert shown(widget.pairs) and not shown(widget.pairs_info)
    widget.train()
    wait(qtbot, widget)
    assert [im.shape for im in jobs[-1].images] == [(64, 64), (64, 64), (64, 64, 3)]
    np.testing.assert_array_equal(jobs[-1].labels[2], labels)
    assert jobs[-1].settings == {
        **{"steps_per_epoch": 3, "epochs": 2, "learning_rate": None, "optimizer": "adam"},
        **{"w0": 10.0, "sigma": 5.0, "num_classes": 2, "depth": 1, "base_filters": 2},
    }
    assert jobs[-1].init is None and jobs[-1].val_images == []
    widget.pairs.value = [(viewer.layers["rgb"], viewer.layers["rgb labels"], None)]
    widget.remove_pair.clicked.emit()
    assert len(widget.pairs.choices) == 1
    viewer.layers.remove("stack labels")  # a pair whose layer is gone goes too
    assert widget.pairs.choices == () and widget.pairs_info.value.startswith("No pairs")
    assert widget.status.value.startswith("Done: 2 steps")


def test_user_mistakes_are_one_sentence_notifications(
    make_napari_viewer, qtbot, notes, tmp_path, monkeypatch
):
    from napari_tiled_unet._widgets import train

    jobs = []
    monkeypatch.setattr(train, "train_steps", fake_steps(jobs))
    viewer = make_napari_viewer()
    widget = open_train(viewer)

    def attempt(expected, action=widget.train):
        before = len(notes)
        action()
        qtbot.waitUntil(lambda: widget.worker is None and len(notes) > before, timeout=30_000)
        errors = [m for s, m in notes[before:] if s == "error"]
        assert len(errors) == 1 and expected in errors[0], (expected, errors)
        assert errors[0][0].isupper() and errors[0].endswith(".")
        assert "\n" not in errors[0] and "Traceback" not in errors[0]
        assert widget.train_button.enabled and widget.status.value == errors[0]

    attempt("There is nothing to train on")
    image, labels = blobs(6)
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels[:60, :60], name="small")
    attempt("The labels 'small' have shape (60, 60) but the image 'cells' has (64, 64)")
    attempt("have shape (60, 60)", widget.add_current_pair)
    assert widget.pairs.choices == ()
    viewer.add_labels(np.zeros((64, 64), np.int32), name="empty")
    widget.labels_layer.value = viewer.layers["empty"]
    attempt("The training labels 'empty' are empty; paint some objects first")
    viewer.layers["empty"].data = -(labels > 0).astype(np.int8)
    attempt("The labels 'empty' hold negative values")
    attempt("hold negative values", widget.weight_map_button.clicked.emit)
    viewer.add_labels(labels, name="good")
    widget.labels_layer.value = viewer.layers["good"]
    widget.model_name.value = "  "
    assert widget.target_info.value.startswith("\u26a0 the model has no name")
    attempt("The model has no name")
    widget.model_name.value = "a/b"
    attempt("The name 'a/b' does not work as a file name")
    widget.model_name.value = "tiny"
    widget.learning_rate.value = "fast"
    attempt("The learning rate 'fast' is not a positive number")
    widget.learning_rate.value = ""
    save_model(build_unet(depth=1, base_filters=2, seed=0), tmp_path / "models" / "tiny.keras")
    widget._update_target()
    attempt("A model called 'tiny.keras' exists already")
    # The message quotes the check box as it reads, next to Name.
    assert f"tick '{widget.overwrite.text}' next to Name" in widget.status.value
    widget.overwrite.value = True
    assert widget.target_info.value == "Saved as tiny.keras, replacing the existing file."
    widget.start.value = "fine-tune"
    widget.model.reset_choices()
    widget.model.value = str(tmp_path / "models" / "tiny.keras")
    (tmp_path / "models" / "tiny.keras").unlink()
    attempt("does not exist; choose another")
    assert jobs == []  # nothing ever started
    widget.start.value = "new"
    viewer.add_image(np.zeros((64, 64, 3), np.float32), name="photo", rgb=True)
    widget.add_current_pair()
    widget.image.value = viewer.layers["photo"]
    widget.add_current_pair()
    monkeypatch.setattr(train, "train_steps", _workers.train_steps)
    attempt("All images must have the same number of channels")  # raised in the worker


def test_parameters_persist_and_restore_defaults(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = open_train(viewer, model_name="nuclei", learning_rate="3e-4")
    widget.optimizer.value, widget.w0.value = "sgd", 7.0
    stored = json.loads((tmp_path / "train.json").read_text())
    assert stored["model_name"] == "nuclei" and stored["learning_rate"] == "3e-4"
    assert (stored["depth"], stored["optimizer"], stored["w0"]) == (1, "sgd", 7.0)
    again = TrainWidget(make_napari_viewer())
    assert (again.model_name.value, again.depth.value, again.classes.value) == ("nuclei", 1, 2)
    assert (again.optimizer.value, again.w0.value) == ("sgd", 7.0)
    again.start.value = "fine-tune"
    assert shown(again.model) and not shown(again.shape_row)
    again.defaults_button.clicked.emit()
    defaults = _settings.TRAIN_DEFAULTS
    assert again.depth.value == defaults["depth"] and again.start.value == "new"
    assert again.learning_rate.value == "" and again.model_name.value == "my_unet"
    assert not shown(again.model) and shown(again.shape_row)
    stored = json.loads((tmp_path / "train.json").read_text())
    assert stored == {"version": _settings.SETTINGS_VERSION, **defaults}


def test_checks_without_a_viewer(tmp_path):
    image, labels = blobs(7)
    with pytest.raises(ValueError, match="'m' are not integers"):
        training_planes([Pair("i", image, "m", labels.astype(np.float32))])
    with pytest.raises(ValueError, match="no training data"):
        training_planes([])
    stack = Pair("i", np.stack([image, 0 * image]), "m", np.stack([0 * labels, labels]))
    planes, targets, ignore = training_planes([stack])  # the unlabelled plane is left out
    assert len(planes) == len(targets) == 1 and planes[0].sum() == 0 and ignore == [None]
    np.testing.assert_array_equal(targets[0], labels)
    # With a "not annotated" mask: a plane it marks in part is annotated background and
    # kept, one it covers whole is left out, one it does not touch keeps the old rule.
    masks = np.zeros((4, *labels.shape), np.uint8)
    masks[0, :10] = 3  # plane 0: no object, partly "not annotated" -> kept
    masks[1] = 1  # plane 1: objects, but all "not annotated" -> left out
    sparse = Pair(
        "i",
        np.stack([image] * 4),
        "m",
        np.stack([0 * labels, labels, 0 * labels, labels]),
        ignore=masks,
    )
    planes, targets, ignore = training_planes([sparse])
    assert len(planes) == 2 and not targets[0].any() and (targets[1] == labels).all()
    assert ignore[0].dtype == bool and ignore[0][:10].all() and not ignore[0][10:].any()
    assert not ignore[1].any()
    with pytest.raises(ValueError, match="'not annotated' layer 'x' has shape"):
        training_planes([Pair("i", image, "m", labels, ignore=masks, ignore_name="x")])
    assert parse_learning_rate(" 1E-4 ") == 1e-4 and parse_learning_rate("") is None
    with pytest.raises(ValueError, match="not a positive number"):
        parse_learning_rate("-1")
    (tmp_path / "a.keras").write_bytes(b"x")
    assert model_target("b.keras", overwrite=False, folder=tmp_path) == tmp_path / "b.keras"
    assert model_target(" a ", overwrite=True, folder=tmp_path) == tmp_path / "a.keras"
    with pytest.raises(ValueError, match="exists already"):
        model_target("a", overwrite=False, folder=tmp_path)
    with pytest.raises(ValueError, match="does not work as a file name"):
        model_target(".hidden", overwrite=True, folder=tmp_path)


def test_widget_modules_do_not_import_tensorflow():
    code = (
        "import sys, napari_tiled_unet._widgets.train; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


FRESH_NAPARI_RUNS = """
import sys, time
import numpy as np
import napari
from qtpy.QtWidgets import QApplication
from napari_tiled_unet._widgets.train import TrainWidget
from napari_tiled_unet.core.train import trainer

viewer = napari.Viewer(show=True)  # OpenGL (under Xvfb: Mesa's LLVM) comes first
labels = np.zeros((64, 64), np.int32)
labels[5:15, 5:15], labels[30:40, 20:30] = 1, 2
viewer.add_image((labels > 0) + np.random.default_rng(0).random((64, 64)), name="cells")
viewer.add_labels(labels, name="cells labels")
widget = TrainWidget(viewer)
viewer.window.add_dock_widget(widget)
for key, value in dict(classes=2, depth=1, base_filters=2, steps=3, epochs=1).items():
    getattr(widget, key).value = value
widget.overwrite.value = True
assert "tensorflow" not in sys.modules
app, step = QApplication.instance(), trainer._train_step

def slow(run):
    time.sleep(0.4)
    return step(run)

def train(cancel):
    trainer._train_step = slow if cancel else step
    widget.train()
    if cancel:
        widget.worker.yielded.connect(lambda _: widget.cancel())
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.01)
    print("status:", widget.status.value.split(";")[0], flush=True)

for _ in range(3):  # runs in reused pool threads: see _workers' docstring
    train(cancel=True)
    train(cancel=False)
viewer.screenshot(canvas_only=False)
viewer.close()
"""


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (Xvfb)")
def test_repeated_runs_in_a_fresh_napari_do_not_crash(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), NAPARI_TILED_UNET_MODELS=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", FRESH_NAPARI_RUNS],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line[8:] for line in done.stdout.splitlines() if line.startswith("status: ")]
    assert len(lines) == 6, done.stdout
    for line in lines[0::2]:  # Cancel pressed at the first event: stops at step 1 or 2
        assert re.fullmatch(r"Cancelled at step [12], before the first epoch ended", line)
    assert all(line.startswith("Done: 3 steps in") for line in lines[1::2])
    assert (tmp_path / "my_unet.keras").is_file()


def test_durations_read_like_a_person_says_them():
    from napari_tiled_unet._widgets._train_text import duration

    assert [duration(s) for s in (0.4, 45, 89, 600, 3900)] == [
        "0 s",
        "45 s",
        "1 min 29 s",
        "10 min",
        "1 h 05 min",
    ]


def test_not_annotated_regions_from_labels_or_shapes(make_napari_viewer, qtbot, monkeypatch):
    from napari_tiled_unet._widgets import train

    jobs = []
    monkeypatch.setattr(train, "train_steps", fake_steps(jobs))
    viewer = make_napari_viewer()
    image, labels = blobs(3)
    labels[:, 32:] = 0  # only the left half was annotated
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells labels")
    rest = np.zeros(labels.shape, np.uint8)
    rest[:, 32:] = 1
    viewer.add_labels(rest, name="not done")
    viewer.add_shapes([[[0, 32], [0, 63], [63, 63], [63, 32]]], name="box")
    widget = open_train(viewer)
    assert [name for name, _ in widget._ignore_choices()] == [
        "none",
        "cells labels",
        "not done",
        "box",
    ]
    widget.image.value = viewer.layers["cells"]
    widget.labels_layer.value = viewer.layers["cells labels"]
    widget.ignore_layer.value = viewer.layers["not done"]
    widget.train()
    wait(qtbot, widget)
    (mask,) = jobs[-1].ignore
    np.testing.assert_array_equal(mask, rest > 0)
    widget.ignore_layer.value = viewer.layers["box"]
    widget.add_current_pair()
    assert widget.pairs.choices[0][2] is viewer.layers["box"]
    widget.train()
    wait(qtbot, widget)
    (mask,) = jobs[-1].ignore
    assert mask[:, 33:63].all() and not mask[:, :31].any()  # the inside of the box
    widget.weight_map_button.clicked.emit()
    qtbot.waitUntil(lambda: "cells labels [weight map]" in viewer.layers, timeout=30_000)
    weights = viewer.layers["cells labels [weight map]"].data
    assert (weights[mask] == 0).all() and (weights[~mask] > 0).all()
    viewer.layers.remove("box")
    assert widget.pairs.choices == ()  # a pair goes with any of its layers
    widget.ignore_layer.value = viewer.layers["cells labels"]
    widget.add_current_pair()
    assert "cannot mark what is not annotated" in widget.status.value


def test_a_tiny_model_trains_with_a_not_annotated_region(tmp_path):
    from napari_tiled_unet._widgets._workers import TrainJob, train_steps
    from napari_tiled_unet.core.model.files import load_model

    image, labels = blobs(4)
    ignore = np.zeros(labels.shape, bool)
    ignore[:, 40:] = True
    settings = {"num_classes": 2, "depth": 1, "base_filters": 2}
    settings.update(steps_per_epoch=2, epochs=1, input_size=44)
    job = TrainJob(
        [image],
        [labels],
        tmp_path / "m.keras",
        settings,
        [image],
        [labels],
        None,
        [ignore],
        [ignore],
    )
    import threading

    events = list(train_steps(job, threading.Event()))
    assert events[-1].step == 2 and events[-1].val_iou is not None
    assert load_model(tmp_path / "m.keras").metadata.num_classes == 2
