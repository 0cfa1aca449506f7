"""The Segment dock widget in a real napari viewer (Xvfb): wiring, not math.

The math behind every number checked here is tested in the core (test_predict.py,
test_outputs.py); these tests check that the widget asks the core the right question and
puts the answer in the right layer.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_tiled_unet import save_model, segment
from napari_tiled_unet.batch import models
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.core import outputs
from napari_tiled_unet.core.model.builder import build_unet
from napari_tiled_unet.core.model.files import UNetModel, load_model
from tests.conftest import lenient_int8_gate, tiny_unet

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("user_folders")]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    everywhere = build_unet(depth=2, base_filters=4, seed=0, name="foreground")
    kernel, _ = everywhere.get_layer("classifier").get_weights()
    everywhere.get_layer("classifier").set_weights([0 * kernel, np.array([0.0, 6.0])])
    files = {
        "random": save_model(tiny_unet(2, 4), folder / "random.keras"),
        "foreground": save_model(everywhere, folder / "foreground.keras"),
        "rgb": save_model(tiny_unet(2, 4, input_channels=3), folder / "rgb.keras"),
        "garbage": folder / "garbage.keras",
    }
    files["garbage"].write_bytes(b"this is not a model")
    return files


def open_widget(viewer, model=None):
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    if model is not None:
        widget.model_file.value = model
    return widget


def shown(field):
    """Whether a form field is meant to be seen (the viewer window itself may be hidden)."""
    return not field.native.isHidden()


def run_and_wait(qtbot, widget, timeout=30_000):
    """Press Run; wait for the run and for its labels (computed in a worker after it)."""
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def wait_for_labels(qtbot, widget):
    """Wait until labels asked for by a change of Threshold, Output or Min. size are shown."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)


def test_runs_from_the_manifest_and_reuses_its_output_layer(
    make_napari_viewer, qtbot, model_files
):
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    viewer.add_image(image, name="cells", scale=(0.5, 0.25), translate=(10, -3))
    widget = open_widget(viewer, model_files["random"])
    assert widget.model.value == str(model_files["random"].resolve())
    assert widget.axes.value == "YX"
    assert widget.plan_info.value.startswith("1 tile of ")
    run_and_wait(qtbot, widget)
    labels = viewer.layers["cells [unet labels]"]
    # uint16 from the start: class and instance labels then share the layer's data type
    assert labels.data.shape == (70, 90) and labels.data.dtype == np.uint16
    np.testing.assert_allclose(labels.scale, (0.5, 0.25))
    np.testing.assert_allclose(labels.translate, (10, -3))
    expected = segment(load_model(model_files["random"]), image).labels
    np.testing.assert_array_equal(labels.data, expected)
    # The first run loads the model: the status says how long that and the tiles took.
    assert widget.status.value.startswith("Done: model loaded in ")
    assert "; 1 tile in " in widget.status.value
    widget.tile_auto.value, widget.tile_size.value = False, 60
    run_and_wait(qtbot, widget)
    assert widget.status.value.startswith("Done: ") and "model loaded" not in widget.status.value
    assert [layer.name for layer in viewer.layers] == ["cells", "cells [unet labels]"]
    assert viewer.layers["cells [unet labels]"] is labels
    np.testing.assert_array_equal(labels.data, expected)  # tiles do not change the result


def test_labels_appear_at_start_and_fill_in_tile_by_tile(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((120, 120), np.float32), name="flat")
    widget = open_widget(viewer, model_files["foreground"])
    widget.tile_auto.value, widget.tile_size.value = (
        False,
        44,
    )  # the smallest tile: hundreds of them
    seen, tiles_before_layer = [], []
    widget.run()
    # The layer comes a turn of the event loop later (the viewer reacts in between).
    viewer.layers.events.inserted.connect(lambda _: tiles_before_layer.append(len(seen)))
    widget.worker.yielded.connect(
        lambda _: seen.append(int(viewer.layers["flat [unet labels]"].data.sum()))
    )
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert tiles_before_layer == [0]  # there before the first tile, and added once
    layer = viewer.layers["flat [unet labels]"]
    filled = [n for n in seen if n]
    assert len(filled) >= 4, seen
    assert filled == sorted(filled) and filled[0] < 120 * 120
    assert layer.data.sum() == 120 * 120  # the model calls every pixel foreground


def test_min_contrast_is_shown_with_min_size(make_napari_viewer, model_files):
    viewer = make_napari_viewer()  # its window is not on screen, as before a dock shows
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget = open_widget(viewer, model_files["random"])
    for output, expected in (
        ("instance labels", True),
        ("class labels", False),
        ("auto", True),  # this form does not know the model's classes: instances possible
    ):
        widget.output.value = output
        assert (shown(widget.min_size), shown(widget.min_contrast)) == (expected, expected)


def test_rethreshold_and_instances_come_from_the_cache(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    image = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = open_widget(viewer, model_files["random"])
    run_and_wait(qtbot, widget)
    probs = segment(load_model(model_files["random"]), image).probabilities
    layer = viewer.layers["img [unet labels]"]
    before = layer.data.copy()
    assert widget.output.value == "auto" and shown(widget.min_size)  # 2 classes: class labels
    np.testing.assert_array_equal(before, probs[..., 1] > 0.5)
    widget.threshold.value = 0.8
    # The handler returned before the labels were recomputed: that happens in a worker,
    # not a new run, and the layer changes once it is done.
    assert widget._active is None and widget.worker is not None
    np.testing.assert_array_equal(layer.data, before)
    wait_for_labels(qtbot, widget)
    np.testing.assert_array_equal(layer.data, probs[..., 1] > 0.8)
    widget.output.value = "instance labels"
    wait_for_labels(qtbot, widget)
    expected = outputs.labels_from_probabilities(
        probs, kind="instances", threshold=0.8, min_size=20
    )
    assert viewer.layers["img [unet labels]"] is layer and layer.data.dtype == np.uint16
    np.testing.assert_array_equal(layer.data, expected)
    widget.output.value = "class labels"  # napari may stop drawing a layer whose type changes
    wait_for_labels(qtbot, widget)
    assert viewer.layers["img [unet labels]"] is layer and layer.data.dtype == np.uint16
    assert not shown(widget.min_size)


def test_only_the_latest_relabel_request_is_shown(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    image = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = open_widget(viewer, model_files["random"])
    run_and_wait(qtbot, widget)
    probs = widget._cache["probabilities"]
    layer = viewer.layers["img [unet labels]"]
    data = layer.data
    for threshold in (0.2, 0.3, 0.4, 0.6, 0.7):  # as fast as a dragged slider
        widget.threshold.value = threshold
    first = widget.worker
    wait_for_labels(qtbot, widget)
    np.testing.assert_array_equal(layer.data, probs[..., 1] > 0.7)
    assert first is not None and layer.data is data  # written in place, never re-set


def test_a_reused_layer_keeps_its_type_or_is_replaced_when_too_small(
    make_napari_viewer, qtbot, model_files
):
    viewer = make_napari_viewer()
    image = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    viewer.add_image(image, name="img", scale=(2, 2))
    mine = viewer.add_labels(np.zeros((64, 64), np.uint8), name="img [unet labels]")
    viewer.add_points(name="on top")
    widget = open_widget(viewer, model_files["random"])
    run_and_wait(qtbot, widget)
    assert viewer.layers["img [unet labels]"] is mine and mine.data.dtype == np.uint8
    probs = segment(load_model(model_files["random"]), image).probabilities
    np.testing.assert_array_equal(mine.data, probs[..., 1] > 0.5)
    yy, xx = np.indices((64, 64))
    dots = ((yy % 2 == 0) & (xx % 2 == 0)).astype(np.float32)  # 1024 objects: beyond uint8
    widget._cache["probabilities"] = np.stack([1 - dots, dots], -1)
    widget.min_size.value = 0
    widget.output.value = "instance labels"
    wait_for_labels(qtbot, widget)
    new = viewer.layers["img [unet labels]"]
    assert new is not mine and new.data.dtype == np.uint16 and new.data.max() == 1024
    assert [layer.name for layer in viewer.layers][1:] == ["img [unet labels]", "on top"]
    np.testing.assert_allclose(new.scale, (2, 2))


def test_a_reused_layer_gets_only_the_spatial_metadata_that_changed(make_napari_viewer):
    from napari_tiled_unet._widgets._layers import show_labels

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((8, 8), np.uint16), name="x", scale=(2, 2))
    changed = []
    for name in ("scale", "translate", "rotate", "affine", "units", "axis_labels"):
        getattr(layer.events, name).connect(lambda _, name=name: changed.append(name))
    meta = {"scale": [2.0, 2.0], "translate": [0.0, 5.0], "rotate": np.eye(2)}
    snapshot = show_labels(viewer, "x", np.ones((8, 8), np.uint16), meta)
    assert snapshot.layer is layer and changed == ["translate"]  # each change redraws
    assert tuple(layer.translate) == (0, 5) and layer.data.sum() == 64
    snapshot.restore(viewer)
    assert tuple(layer.translate) == (0, 0) and layer.data.sum() == 0


def _tool_overlays(layer):
    """napari's polygon and brush-stroke overlays of a labels layer (napari's own attribute)."""
    return [layer._overlays[key] for key in ("polygon", "brush_stroke")]


@pytest.mark.parametrize("view", ["2D", "grid", "3D"])
def test_a_new_layer_enters_the_viewer_in_steps(make_napari_viewer, view):
    from napari_tiled_unet._widgets._layers import next_step, show_labels

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="img")
    canvas = getattr(viewer, "canvas", None)  # napari >= 0.7 keeps the grid there
    (canvas.grid if canvas is not None else viewer.grid).enabled = view == "grid"
    viewer.dims.ndisplay = 3 if view == "3D" else 2
    snapshot = show_labels(viewer, "x", np.ones((8, 8), np.uint16), {}, insert=False)
    layer = snapshot.layer
    snapshot.insert(viewer, in_steps=True)
    # In the viewer, but hidden, not selected, and without its drawing overlays' visuals
    assert layer in viewer.layers and not layer.visible
    assert viewer.layers.selection.active is viewer.layers["img"]
    assert not any(overlay.visible for overlay in _tool_overlays(layer))
    states = []
    while next_step(snapshot.pending):  # each step is a turn of the event loop of its own
        states.append((viewer.layers.selection.active is layer, layer.visible))
    assert len(states) == 3  # select, show, polygon overlay; the brush overlay last
    assert states[0] == (True, False) and states[1] == (True, True)
    assert layer.visible and viewer.layers.selection.active is layer
    assert all(overlay.visible for overlay in _tool_overlays(layer))
    # napari built their visuals once shown: the polygon tool draws
    visuals = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[layer]
    assert set(_tool_overlays(layer)) <= set(visuals)
    layer.mode = "polygon"
    assert layer._overlays["polygon"].enabled


def test_a_layer_shown_at_once_is_whole_and_selected(make_napari_viewer):
    from napari_tiled_unet._widgets._layers import show_labels

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="img")
    snapshot = show_labels(viewer, "x", np.ones((8, 8), np.uint16), {})  # e.g. Open result
    layer = snapshot.layer
    assert layer.visible and viewer.layers.selection.active is layer and not snapshot.pending
    assert all(overlay.visible for overlay in _tool_overlays(layer))


def test_a_run_shows_its_new_layer_whole_and_selected(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((64, 64), np.float32), name="flat")
    widget = open_widget(viewer, model_files["foreground"])
    run_and_wait(qtbot, widget)
    layer = viewer.layers["flat [unet labels]"]
    assert layer.visible and viewer.layers.selection.active is layer
    assert all(overlay.visible for overlay in _tool_overlays(layer))
    assert layer.data.sum() == 64 * 64


def test_the_window_paints_the_new_layer_a_turn_after_it_is_inserted(
    make_napari_viewer, qtbot, model_files
):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((64, 64), np.float32), name="flat")
    widget = open_widget(viewer, model_files["foreground"])
    from qtpy.QtWidgets import QMainWindow

    window = widget.native.window()
    assert isinstance(window, QMainWindow) and window.updatesEnabled()
    painting = []

    def record(_):
        painting.append(window.updatesEnabled())

    viewer.layers.events.inserted.connect(record)
    run_and_wait(qtbot, widget)
    viewer.layers.events.inserted.disconnect(record)
    assert painting == [False]  # held while napari inserted the layer
    assert window.updatesEnabled() and viewer.layers["flat [unet labels]"].visible


def test_a_layer_cancelled_between_its_steps_is_gone(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((64, 64), np.float32), name="flat")
    widget = open_widget(viewer, model_files["foreground"])
    inserted = []
    viewer.layers.events.inserted.connect(lambda event: inserted.append(event.value))
    widget.run()
    qtbot.waitUntil(lambda: bool(inserted), timeout=10_000)
    widget.cancel()  # before the layer is shown or selected
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert [layer.name for layer in viewer.layers] == ["flat"]
    assert viewer.layers.selection.active is viewer.layers["flat"]


def test_the_first_progress_bar_is_made_while_the_viewer_is_idle(make_napari_viewer, qtbot):
    from napari.utils import progress

    from napari_tiled_unet._widgets import _dock

    _dock._progress_warmed = False
    made = []
    progress._all_instances.events.changed.connect(lambda event: made.extend(event.added))
    viewer = make_napari_viewer()
    open_widget(viewer)
    viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Batch")
    qtbot.waitUntil(lambda: _dock._progress_warmed, timeout=5_000)
    qtbot.wait(2 * _dock._WARM_DELAY_MS)  # the second dock makes none
    assert len(made) == 1 and not progress._all_instances  # one, and closed again


def test_cancel_stops_early_and_leaves_the_viewer_as_before(
    make_napari_viewer, qtbot, model_files, monkeypatch
):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((150, 150), np.float32), name="flat")
    widget = open_widget(viewer, model_files["foreground"])
    run_and_wait(qtbot, widget)  # a first, complete run: its labels are reused
    before = viewer.layers["flat [unet labels]"].data
    original = UNetModel.predict_batch

    def slow(self, batch):
        time.sleep(0.05)
        return original(self, batch)

    monkeypatch.setattr(UNetModel, "predict_batch", slow)
    widget.tile_auto.value, widget.tile_size.value = (
        False,
        44,
    )  # hundreds of tiles in batches of 16
    after_cancel = []

    def press_cancel_once(_):
        if not after_cancel:
            widget.cancel()
        after_cancel.append(1)

    widget.run()
    widget.worker.yielded.connect(press_cancel_once)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert widget.status.value.startswith("Cancelled")
    assert len(after_cancel) <= 3  # the batch in flight when Cancel was pressed, no more
    assert [layer.name for layer in viewer.layers] == ["flat", "flat [unet labels]"]
    assert viewer.layers["flat [unet labels]"].data is before
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    viewer.layers.remove("flat [unet labels]")
    widget.run()  # a fresh layer is removed again on cancel
    widget.worker.yielded.connect(lambda _: widget.cancel())
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert [layer.name for layer in viewer.layers] == ["flat"]


def test_cancel_right_after_run_leaves_the_viewer_as_before(
    make_napari_viewer, qtbot, model_files
):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((64, 64), np.float32), name="flat")
    # Same name, other dimensionality: a run replaces it at its place, a cancel keeps it.
    old = viewer.add_labels(np.zeros((3, 64, 64), np.uint8), name="flat [unet labels]")
    viewer.add_points(name="on top")
    before = list(viewer.layers)
    widget = open_widget(viewer, model_files["foreground"])
    widget.run()
    widget.cancel()  # before the new layer is shown and the worker starts
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert widget.status.value.startswith("Cancelled")
    assert list(viewer.layers) == before and viewer.layers["flat [unet labels]"] is old
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    widget.run()  # a complete run replaces the old layer where it was
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    names = [layer.name for layer in viewer.layers]
    assert names == ["flat", "flat [unet labels]", "on top"]
    assert viewer.layers["flat [unet labels]"] is not old
    assert viewer.layers["flat [unet labels]"].data.shape == (64, 64)


def test_user_mistakes_are_one_sentence_notifications(
    make_napari_viewer, qtbot, model_files, notes
):
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    cases = []

    def attempt(expected):
        before = len(notes)
        run_and_wait(qtbot, widget)
        errors = [m for s, m in notes[before:] if s == "error"]
        cases.append((expected, errors))
        assert len(errors) == 1 and expected in errors[0], (expected, errors)
        assert errors[0][0].isupper() or errors[0].startswith(expected)
        assert errors[0].endswith(".") and "\n" not in errors[0] and "Traceback" not in errors[0]
        assert widget.run_button.enabled and widget.status.value == errors[0]

    attempt("There is no image to segment")
    viewer.add_image(np.zeros((2, 3, 40, 40), np.float32), name="hyper")
    attempt("No model chosen")
    widget.model_file.value = model_files["garbage"]
    assert widget.axes.value == ""  # 4D: no guess
    attempt("type its axes")
    widget.axes.value = "TZYX"
    attempt("garbage.keras is not a Keras model file")
    assert [layer.name for layer in viewer.layers] == ["hyper"]  # its labels were removed
    widget.model_file.value = model_files["random"]
    widget.axes.value = "CZYX"
    attempt("the image has 2 channel(s)")
    viewer.add_image(np.zeros((40, 40, 3), np.uint8), name="photo", rgb=True)
    widget.image.value = viewer.layers["photo"]
    assert widget.axes.value == "YXC"
    attempt("is RGB (3 channels)")
    assert widget.plan_info.value.startswith("\u26a0 the model expects 1 channel")


def test_probabilities_on_request(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    image = np.random.default_rng(2).random((50, 40)).astype(np.float32)
    viewer.add_image(image, name="img", scale=(2.0, 3.0))
    widget = open_widget(viewer, model_files["random"])
    run_and_wait(qtbot, widget)
    assert "img P(foreground)" not in viewer.layers
    widget.probabilities.value = True  # from the cache, without running again
    assert widget.worker is None
    probs = segment(load_model(model_files["random"]), image).probabilities
    # One translucent layer per class, between the image and the labels.
    names = [layer.name for layer in viewer.layers]
    assert names == ["img", "img P(background)", "img P(foreground)", "img [unet labels]"]
    for index, name in enumerate(("background", "foreground")):
        layer = viewer.layers[f"img P({name})"]
        assert layer.data.shape == (50, 40) and layer.metadata["class_name"] == name
        np.testing.assert_allclose(layer.data, probs[..., index], atol=1e-6)
        np.testing.assert_allclose(layer.scale, (2.0, 3.0))
        assert layer.blending == "additive" and layer.opacity == pytest.approx(0.5)
        assert layer.visible == (index > 0)  # the background starts hidden
    assert viewer.layers["img P(foreground)"].colormap.name == "green"
    assert widget.image.choices == (viewer.layers["img"],)  # outputs are not inputs
    run_and_wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == names


def test_stacks_current_plane_or_whole_stack(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(3).random((3, 48, 40)).astype(np.float32)
    viewer.add_image(stack, name="stack")
    widget = open_widget(viewer, model_files["random"])
    assert widget.axes.value == "ZYX" and shown(widget.stack)
    widget.probabilities.value = True
    widget.stack.value = "current plane"
    viewer.dims.set_current_step(0, 1)
    run_and_wait(qtbot, widget)
    probs = viewer.layers["stack P(foreground)"].data  # (Z, Y, X)
    assert viewer.layers["stack [unet labels]"].data.shape == (3, 48, 40)
    assert probs[1].sum() > 0 and probs[0].sum() == 0 and probs[2].sum() == 0
    widget.stack.value = "whole stack"
    assert "x 3 planes" in widget.plan_info.value
    run_and_wait(qtbot, widget)
    expected = segment(load_model(model_files["random"]), stack, axes="ZYX")
    np.testing.assert_allclose(
        viewer.layers["stack P(foreground)"].data, expected.probabilities[..., 1], atol=1e-6
    )
    np.testing.assert_array_equal(viewer.layers["stack [unet labels]"].data, expected.labels)


def test_a_stack_run_segments_the_plane_on_view_first(make_napari_viewer, qtbot, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((3, 60, 60), np.float32), name="flat")
    widget = open_widget(viewer, model_files["foreground"])
    widget.stack.value = "whole stack"
    viewer.dims.set_current_step(0, 2)
    planes, on_view = [], []

    def seen(item):
        if hasattr(item, "progress"):  # a tile (the first item may be the loaded model)
            planes.append(item.progress.plane)
            on_view.append(int(viewer.layers["flat [unet labels]"].data[2].sum()))

    widget.run()
    widget.worker.yielded.connect(seen)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert planes[0] == (2,) and sorted(set(planes)) == [(0,), (1,), (2,)]
    assert on_view[0] == 60 * 60  # its labels were in the layer after the first tile
    assert (viewer.layers["flat [unet labels]"].data == 1).all()


def test_parameters_persist_and_restore_defaults(make_napari_viewer, model_files, tmp_path):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, model_files["random"])
    widget.threshold.value = 0.3
    widget.output.value = "instance labels"
    widget.tile_auto.value, widget.tile_size.value = False, 200
    widget.normalize.value = "percentiles"
    widget.low.value = 2.5
    stored = json.loads((tmp_path / "settings.json").read_text())
    assert stored["threshold"] == pytest.approx(0.3) and stored["low"] == 2.5
    assert stored["model"] == str(model_files["random"].resolve())
    again = open_widget(make_napari_viewer())
    assert again.threshold.value == pytest.approx(0.3)
    assert (again.output.value, again.tile_request) == ("instance labels", 200)
    assert not again.tile_auto.value and again.tile_size.enabled
    assert shown(again.low) and again.low.value == 2.5
    assert again.model.value == str(model_files["random"].resolve())
    again.defaults_button.clicked.emit()
    defaults = _settings.SEGMENT_DEFAULTS
    assert again.threshold.value == pytest.approx(defaults["threshold"])
    assert (again.output.value, again.tile_request) == ("auto", 0)
    assert again.min_size.value == 20 and shown(again.min_size)
    assert again.tile_auto.value and not again.tile_size.enabled
    assert not shown(again.low)
    stored = json.loads((tmp_path / "settings.json").read_text())
    assert {k: v for k, v in stored.items() if k != "model"} == {
        "version": _settings.SETTINGS_VERSION,
        **{k: v for k, v in defaults.items() if k != "model"},
    }


def test_settings_file_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "deep" / "settings.json"
    values = dict(_settings.SEGMENT_DEFAULTS, threshold=0.7, tile_size=300, model="/m.keras")
    assert _settings.save_settings({**values, "unknown": 1}, path)
    assert _settings.load_settings(path) == values
    path.write_text(json.dumps({"threshold": "high", "probabilities": 1, "low": 3}))
    loaded = _settings.load_settings(path)
    assert loaded["threshold"] == 0.5 and loaded["probabilities"] is False
    assert loaded["low"] == 3.0 and isinstance(loaded["low"], float)
    path.write_text("{not json")
    assert _settings.load_settings(path) == _settings.SEGMENT_DEFAULTS
    (tmp_path / "file").write_text("")
    assert not _settings.save_settings(values, tmp_path / "file" / "settings.json")


def test_old_settings_files_take_the_new_output_defaults(tmp_path):
    """Files before version 2 hold the old defaults whether chosen or not: they give way."""
    path = tmp_path / "settings.json"
    old = {"output": "class labels", "min_size": 0, "threshold": 0.7}
    path.write_text(json.dumps(old))
    loaded = _settings.load_settings(path)
    assert (loaded["output"], loaded["min_size"], loaded["threshold"]) == ("auto", 20, 0.7)
    path.write_text(json.dumps({"output": "instance labels", "min_size": 5}))
    assert _settings.load_settings(path)["min_size"] == 5  # chosen values stay
    assert _settings.save_settings({**loaded, "output": "class labels", "min_size": 0}, path)
    again = _settings.load_settings(path)  # version 2: chosen now, so kept
    assert (again["output"], again["min_size"]) == ("class labels", 0)


def test_models_folder_is_listed_and_layers_update_choices(make_napari_viewer, model_files):
    import shutil

    folder = models.models_folder()
    folder.mkdir(parents=True)
    shutil.copy(model_files["rgb"], folder / "colour.keras")
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    assert widget.model.value == str(folder / "colour.keras")
    assert widget.model_info.value.startswith("3 channels -> 2 classes")
    assert widget.image.choices == ()
    viewer.add_image(np.zeros((5, 30, 30, 3), np.uint8), rgb=True, name="movie")
    assert widget.image.value is viewer.layers["movie"]
    assert widget.axes.value == "ZYXC" and shown(widget.stack)
    assert "x 5 planes" in widget.plan_info.value
    viewer.layers.remove("movie")
    assert widget.image.choices == () and widget.axes.value == ""


def _in_fresh_napari(script: str, model, tmp_path) -> subprocess.CompletedProcess:
    """Run ``script`` (argument: the model file) in a new Python with its own user folders."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), NAPARI_TILED_UNET_MODELS=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-c", script, str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


FRESH_NAPARI_RUN = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=True)  # OpenGL (under Xvfb: Mesa's LLVM) comes first ...
viewer.open_sample("napari-tiled-unet", "nuclei2d")
_, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
widget.model_file.value = sys.argv[1]
assert "tensorflow" not in sys.modules
widget.run()  # ... and the worker imports TensorFlow on this first Run
app = QApplication.instance()
while widget.worker is not None:
    app.processEvents()
    time.sleep(0.01)
viewer.screenshot(canvas_only=False)  # draw with both LLVMs loaded
print(widget.status.value, viewer.layers["nuclei [unet labels]"].data.shape)
viewer.close()
"""


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (Xvfb)")
def test_first_run_in_a_fresh_napari_imports_tensorflow_safely(model_files, tmp_path):
    done = _in_fresh_napari(FRESH_NAPARI_RUN, model_files["random"], tmp_path)
    # Without _keras._isolated_dlopen this segfaults (-11) under Mesa.
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(512, 512)" in done.stdout and "Done: model loaded in" in done.stdout


FRESH_NAPARI_IMPORTS = """
import sys, threading, time
import napari
from qtpy.QtWidgets import QApplication
from napari_tiled_unet.data import nuclei2d

viewer = napari.Viewer(show=True)
viewer.add_image(nuclei2d()[0], name="nuclei")  # no labels layer yet
_, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
widget.model_file.value = sys.argv[1]
for thread in threading.enumerate():  # what the dock imports ahead, in a thread
    if thread.name == "napari-tiled-unet imports":
        thread.join()
from vispy.visuals.line import dash_atlas
patterns = dash_atlas._make_pattern.cache_info().currsize
print("dash patterns before the first labels layer:", patterns)

class MainThreadImports:
    found = []
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread() is threading.main_thread():
            self.found.append(name)

sys.meta_path.insert(0, MainThreadImports())
widget.run()
app = QApplication.instance()
while widget.worker is not None:
    app.processEvents()
    time.sleep(0.01)
print(widget.status.value)
heavy = ("tensorflow", "keras", "pandas", "scipy", "skimage", "h5py", "ml_dtypes")
print("main-thread imports:", sorted({n for n in MainThreadImports.found if n.startswith(heavy)}))
viewer.close()
"""


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (Xvfb)")
def test_a_first_run_imports_nothing_heavy_on_the_main_thread(model_files, tmp_path):
    done = _in_fresh_napari(FRESH_NAPARI_IMPORTS, model_files["random"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done: model loaded in" in done.stdout, done.stdout
    # TensorFlow loads in the worker, and what napari imports for the first labels layer
    # (pandas, scikit-image's colours) was imported in a thread when the dock opened.
    assert "main-thread imports: []" in done.stdout, done.stdout
    # vispy's dash patterns for the layer's polygon overlay were built in that thread too
    assert "dash patterns before the first labels layer: 0" not in done.stdout, done.stdout
    assert "dash patterns before the first labels layer:" in done.stdout, done.stdout


FRESH_NAPARI_REPEATS = """
import os, sys, time
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=True)
viewer.open_sample("napari-tiled-unet", "nuclei2d")
_, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
widget.model_file.value = sys.argv[1]
widget.tile_auto.value, widget.tile_size.value = False, 100
app = QApplication.instance()

def run(cancel):
    os.utime(sys.argv[1])  # a changed file: every run loads the model again
    widget.run()
    if cancel:
        widget.worker.yielded.connect(lambda _: widget.cancel())
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.01)
    print("status:", widget.status.value.split(":")[0], flush=True)

for _ in range(4):  # TensorFlow in reused pool threads: see _widgets/_thread.py
    run(cancel=False)
    run(cancel=True)
viewer.close()
"""


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (Xvfb)")
def test_repeated_runs_and_cancels_in_a_fresh_napari_do_not_crash(model_files, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(model_files["random"].read_bytes())
    done = _in_fresh_napari(FRESH_NAPARI_REPEATS, model, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line[8:] for line in done.stdout.splitlines() if line.startswith("status: ")]
    assert lines == ["Done", "Cancelled; the viewer is as it was before Run."] * 4, done.stdout


def test_shows_the_size_estimate_before_run_and_segments_at_the_model_scale(
    make_napari_viewer, qtbot, tmp_path
):
    from dataclasses import replace

    from napari_tiled_unet.core.model.files import UNetModel
    from napari_tiled_unet.core.train.synthetic import NucleiStyle, synthetic_nuclei

    unet = tiny_unet(2, 4, num_classes=3)
    path = save_model(
        UNetModel(unet.keras_model, replace(unet.metadata, object_size=20.0)),
        tmp_path / "sized.keras",
    )
    image, _ = synthetic_nuclei((160, 140), 40, rng=np.random.default_rng(0), style=NucleiStyle())
    viewer = make_napari_viewer()
    viewer.add_image(image, name="big nuclei", scale=(0.3, 0.3))
    widget = open_widget(viewer, path)
    assert widget.object_size.value == "auto"
    info = widget.plan_info.value
    assert info.startswith("Objects ~") and "-> image scaled x0." in info
    expected = segment(load_model(path), image)
    assert f"x{expected.rescale.factor:.2f}" in info
    run_and_wait(qtbot, widget)
    labels = viewer.layers["big nuclei [unet labels]"]
    assert labels.data.shape == (160, 140)
    np.testing.assert_allclose(labels.scale, (0.3, 0.3))
    # A border class: instance labels by default, objects under 20 px dropped.
    instances = outputs.labels_from_probabilities(
        expected.probabilities, kind="instances", min_size=20
    )
    np.testing.assert_array_equal(labels.data, instances)
    widget.object_size.value = "none"
    assert widget.plan_info.value.startswith("Object size: not used")


def test_widget_command_line_and_batch_make_the_same_labels(make_napari_viewer, qtbot, tmp_path):
    """One image, one model with a border class, every entry point at its defaults."""
    import tifffile
    from scipy import ndimage

    from napari_tiled_unet.batch.run import run_batch
    from napari_tiled_unet.cli.main import main

    model = save_model(tiny_unet(2, 4, num_classes=3, seed=2), tmp_path / "border.keras")
    rng = np.random.default_rng(5)
    image = ndimage.gaussian_filter(rng.random((120, 100)), 2).astype(np.float32)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    widget = open_widget(viewer, model)
    run_and_wait(qtbot, widget)
    from_widget = viewer.layers["cells [unet labels]"].data
    args = [str(tmp_path / "cells.tif"), "-o", str(tmp_path / "cli"), "--model", str(model)]
    assert main(["segment", *args, "-q"]) == 0
    from_cli = tifffile.imread(tmp_path / "cli" / "cells_labels.tif")
    assert run_batch([tmp_path / "cells.tif"], tmp_path / "batch", model=model).ok
    from_batch = tifffile.imread(tmp_path / "batch" / "cells_labels.tif")
    assert from_widget.max() > 1  # instance labels, several objects
    np.testing.assert_array_equal(from_widget, from_cli)
    np.testing.assert_array_equal(from_widget, from_batch)


def test_precision_budget_and_tta_fields_reach_the_run(make_napari_viewer, model_files):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((300, 280)).astype(np.float32), name="i")
    widget = open_widget(viewer, model_files["random"])
    widget.precision.value, widget.tta.value = "bfloat16", True
    widget.memory_budget.value = "2MB"
    job, _ = widget._prepare()
    assert job.options.precision == "bfloat16" and job.options.tta is True
    assert job.options.memory_budget == 2 * 10**6
    small = job.plan
    widget.memory_budget.value = ""
    job, _ = widget._prepare()
    assert job.options.memory_budget is None and job.plan.tile_in[0] > small.tile_in[0]
    widget.memory_budget.value = "plenty"
    with pytest.raises(ValueError, match="cannot read the memory size 'plenty'"):
        widget._prepare()


def test_int8_is_a_precision_choice_and_the_status_says_how_it_went(
    make_napari_viewer, qtbot, model_files, monkeypatch, tmp_path
):
    pytest.importorskip("onnxruntime", reason="int8 needs the onnx extra (onnxruntime)")
    from napari_tiled_unet.core.cache import CACHE_ENV_VAR

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    lenient_int8_gate(monkeypatch)
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((120, 100)).astype(np.float32), name="i")
    widget = open_widget(viewer, model_files["random"])
    assert "int8" in widget.precision.choices
    widget.precision.value = "int8"
    job, _ = widget._prepare()
    assert job.options.precision == "int8"
    run_and_wait(qtbot, widget)
    status = widget.status.value
    assert status.startswith("Done: ") and status.count("; int8: ") == 1
    assert "agreement with float32 on 4 held-out tiles" in status
    assert any(layer.data.shape == (120, 100) for layer in viewer.layers[1:])
    assert list((tmp_path / "cache" / "int8").glob("*.onnx"))


def test_the_plan_follows_this_machines_tile_timings(
    make_napari_viewer, qtbot, model_files, monkeypatch, tmp_path
):
    from napari_tiled_unet.core.autotune import tune_tiles
    from napari_tiled_unet.core.cache import CACHE_ENV_VAR

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))  # no timings for other tests
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((300, 280)).astype(np.float32)
    viewer.add_image(image, name="cells")
    widget = open_widget(viewer, model_files["random"])
    assert "(timed here)" not in widget.plan_info.value
    tune_tiles(tiny_unet(2, 4), sizes=[44, 92])  # the same architecture as the model file
    widget.memory_budget.value = "100MB"  # any change of a choice plans again
    assert "(timed here)" in widget.plan_info.value
    widget.precision.value = "bfloat16"  # not timed in bfloat16
    assert "(timed here)" not in widget.plan_info.value
    widget.precision.value = "float32"
    assert "(timed here)" in widget.plan_info.value
    run_and_wait(qtbot, widget)
    assert viewer.layers["cells [unet labels]"].data.shape == (300, 280)
