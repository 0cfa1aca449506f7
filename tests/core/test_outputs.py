"""The widget's decisions as pure functions: labels from probabilities, axes, planes, plans."""

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pytest

from napari_tiled_unet.core import outputs
from napari_tiled_unet.core.axes import parse_axes
from napari_tiled_unet.core.tiling import NetworkSpec, plan_tiles


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def square_probabilities(shape, squares, classes=2):
    """Probabilities that put the foreground (class 1) in the given (y0, y1, x0, x1) boxes."""
    probs = np.zeros((*shape, classes), np.float32)
    probs[..., 0] = 1.0
    for y0, y1, x0, x1 in squares:
        probs[..., y0:y1, x0:x1, :] = 0.0
        probs[..., y0:y1, x0:x1, 1] = 1.0
    return probs


def test_two_class_labels_at_half_are_the_argmax():
    probs = softmax(np.random.default_rng(0).normal(size=(40, 30, 2)))
    labels = outputs.class_labels(probs, threshold=0.5)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, probs.argmax(-1))


def test_threshold_moves_the_boundary_monotonically():
    probs = softmax(np.random.default_rng(1).normal(size=(50, 50, 2)) * 2)
    low, mid, high = (outputs.class_labels(probs, threshold=t) for t in (0.2, 0.5, 0.8))
    assert low.sum() > mid.sum() > high.sum()
    assert np.all(high <= mid) and np.all(mid <= low)
    np.testing.assert_array_equal(high, (probs[..., 1] > 0.8).astype(np.uint8))


def test_three_classes_take_the_best_foreground_class():
    probs = np.array(
        [[0.6, 0.3, 0.1], [0.4, 0.35, 0.25], [0.4, 0.2, 0.4], [0.1, 0.1, 0.8]], np.float32
    )
    # At 0.5 the argmax (a tie goes to background); lower thresholds let a foreground
    # class win against a more probable background (odds 0.3 / 0.7), higher ones not.
    np.testing.assert_array_equal(outputs.class_labels(probs, threshold=0.5), [0, 0, 0, 2])
    np.testing.assert_array_equal(outputs.class_labels(probs, threshold=0.3), [1, 1, 2, 2])
    np.testing.assert_array_equal(outputs.class_labels(probs, threshold=0.7), [0, 0, 0, 2])


def test_labels_at_half_are_the_argmax_for_any_number_of_classes():
    for classes in (2, 3, 5):
        probs = softmax(np.random.default_rng(classes).normal(size=(30, 20, classes)))
        labels = outputs.class_labels(probs, threshold=0.5)
        np.testing.assert_array_equal(labels, probs.argmax(-1))


def test_never_computed_regions_are_background():
    probs = np.zeros((4, 5, 3), np.float32)
    assert outputs.foreground_probability(probs).max() == 0
    assert not outputs.class_labels(probs, threshold=0.05).any()


@pytest.mark.parametrize("threshold", [-0.1, 1.0, 2])
def test_threshold_outside_unit_interval_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold"):
        outputs.class_labels(np.zeros((2, 2, 2), np.float32), threshold=threshold)


def test_a_single_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        outputs.class_labels(np.ones((3, 3, 1), np.float32))


def test_instances_are_connected_foreground_regions():
    probs = square_probabilities((30, 30), [(2, 8, 2, 8), (20, 25, 10, 28), (12, 13, 12, 13)])
    labels = outputs.labels_from_probabilities(probs, kind="instances")
    assert labels.dtype == np.uint16
    assert labels.max() == 3
    assert len({labels[5, 5], labels[22, 15], labels[12, 12]}) == 3
    dropped = outputs.labels_from_probabilities(probs, kind="instances", min_size=2)
    assert dropped.max() == 2 and dropped[12, 12] == 0


def test_instances_are_made_per_plane_with_ids_unique_in_the_stack():
    probs = square_probabilities((2, 20, 20), [(5, 10, 5, 10)])  # the same box in both planes
    labels = outputs.labels_from_probabilities(probs, axes="ZYX", kind="instances")
    assert labels.shape == (2, 20, 20)
    assert {labels[0, 7, 7], labels[1, 7, 7]} == {1, 2}  # not merged across planes


def test_instances_follow_the_axes_when_planes_are_last():
    probs = square_probabilities((2, 20, 20), [(5, 10, 5, 10)])
    moved = np.moveaxis(probs, 0, 2)  # Y X Z classes
    labels = outputs.labels_from_probabilities(moved, axes="YXZ", kind="instances")
    assert labels.shape == (20, 20, 2)
    assert {labels[7, 7, 0], labels[7, 7, 1]} == {1, 2}


def test_three_class_instances_split_touching_objects_at_their_border():
    probs = np.zeros((12, 20, 3), np.float32)
    probs[..., 0] = 1
    probs[2:10, 2:18] = [0, 0, 1]  # one block of border ...
    probs[3:9, 3:9] = [0, 1, 0]  # ... around two interiors that touch through it
    probs[3:9, 11:17] = [0, 1, 0]
    classes = outputs.labels_from_probabilities(probs, kind="classes")
    assert classes.dtype == np.uint8 and set(np.unique(classes)) == {0, 1, 2}
    instances = outputs.labels_from_probabilities(probs, kind="instances")
    assert instances.max() == 2
    assert instances[5, 5] != instances[5, 14]


def test_unknown_output_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        outputs.labels_from_probabilities(np.zeros((3, 3, 2), np.float32), kind="blobs")


def test_canonical_view_writes_through():
    array = np.zeros((5, 3, 4), np.uint8)  # Y Z X
    view = outputs.canonical_view(array, "YZX")
    assert view.shape == (3, 5, 4)
    view[2][1:3, 0:2] = 7
    assert array[1:3, 2, 0:2].tolist() == [[7, 7], [7, 7]]
    assert array.sum() == 28
    with_classes = outputs.canonical_view(np.zeros((5, 3, 4, 2)), "YZX")
    assert with_classes.shape == (3, 5, 4, 2)


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((512, 512), {}, "YX"),
        ((3, 64, 64), {}, "ZYX"),
        ((64, 64, 3), {"rgb": True}, "YXC"),
        ((5, 64, 64, 4), {"rgb": True}, "ZYXC"),
        ((2, 64, 64), {"input_channels": 2}, "CYX"),
        ((64, 64, 2), {"input_channels": 2}, "YXC"),
        ((2, 64, 64), {"input_channels": 1}, "ZYX"),
        ((2, 3, 64, 64), {}, ""),
        ((2, 3, 64, 64), {"axis_labels": ("t", "z", "y", "x")}, "TZYX"),
        ((2, 3, 64, 64), {"axis_labels": ("Time", "Channel", "Y", "X")}, "TCYX"),
        ((3, 64, 64), {"axis_labels": ("-3", "-2", "-1")}, "ZYX"),
        ((4, 64, 64, 3), {"rgb": True, "axis_labels": ("t", "y", "x")}, "TYXC"),
        ((4, 64, 64), {"axis_labels": ("z", "z", "x")}, "ZYX"),
    ],
)
def test_guess_axes(shape, kwargs, expected):
    assert outputs.guess_axes(shape, **kwargs) == expected


def test_check_image_explains_what_is_wrong():
    with pytest.raises(ValueError, match=r"type its axes, e\.g\. TZYX"):
        outputs.check_image((2, 3, 64, 64), "", 1)
    with pytest.raises(ValueError, match="is RGB"):
        outputs.check_image((64, 64, 3), "YXC", 1, rgb=True)
    with pytest.raises(ValueError, match="expects 2 channel"):
        outputs.check_image((3, 64, 64), "ZYX", 2)
    with pytest.raises(ValueError, match="name 2 dimensions"):
        outputs.check_image((3, 64, 64), "YX", 1)
    assert outputs.check_image((2, 64, 64), "CYX", 2).plane_axes == ""
    assert outputs.check_image((4, 2, 64, 64), "ZCYX", None).plane_axes == "Z"


def test_current_plane_rounds_and_clips():
    assert outputs.current_plane("TZYX", (3, 5, 10, 10), (1.4, 2.6, 3, 3)) == (1, 3)
    assert outputs.current_plane("ZYX", (5, 10, 10), (-2.0, 0, 0)) == (0,)
    assert outputs.current_plane("ZYX", (5, 10, 10), (9.0, 0, 0)) == (4,)
    assert outputs.current_plane("YX", (10, 10), (4, 4)) == ()
    # An RGB layer's position has no value for the colour axis.
    assert outputs.current_plane("ZYXC", (5, 10, 10, 3), (2.2, 1, 1)) == (2,)


def test_planes_from_puts_the_plane_on_view_first_and_lists_each_once():
    assert outputs.planes_from("ZYX", (3, 8, 8), (2.2, 0, 0)) == [(2,), (0,), (1,)]
    assert outputs.planes_from("YX", (8, 8), (1, 1)) == [()]
    planes = outputs.planes_from("TZYXC", (2, 3, 8, 8, 2), (1, 0, 0, 0))
    assert planes[0] == (1, 0) and sorted(planes) == sorted(np.ndindex(2, 3))
    assert len(planes) == 6


@pytest.mark.parametrize(
    ("axes", "ndim", "kept"),
    [("ZCYX", 4, [0, 2, 3]), ("YXC", 2, [0, 1]), ("ZYX", 3, [0, 1, 2]), ("CYX", 3, [1, 2])],
)
def test_kept_layer_axes_drop_the_channel(axes, ndim, kept):
    assert outputs.kept_layer_axes(axes, ndim) == kept


def test_kept_layer_axes_refuses_a_mismatch():
    with pytest.raises(ValueError, match="cannot have axes"):
        outputs.kept_layer_axes("ZYX", 5)


def test_plans_batches_and_descriptions():
    spec = NetworkSpec(depth=2, base_filters=4)
    plan = plan_tiles((200, 200), spec, tile_size=60)
    assert (plan.n_tiles, plan.batch_size) == (100, 16)
    assert outputs.live_batch_size(plan) == 13  # at least 8 updates: ceil(100 / 8)
    assert outputs.live_batch_size(plan_tiles((500, 500), spec, tile_size=60)) == 16
    assert outputs.live_batch_size(plan_tiles((40, 40), spec)) == 1
    text = outputs.describe_plan(plan, 3, outputs.live_batch_size(plan))
    assert text.startswith(f"{plan.n_tiles} tiles of 60 x 60 px per plane x 3 planes; about ")
    assert text.endswith(("KB of memory", "MB of memory"))
    assert outputs.describe_plan(plan_tiles((40, 40), spec)).startswith("1 tile of ")
    timed = dataclasses.replace(plan_tiles((40, 40), spec), chosen_by="timings")
    assert " px (timed here); about " in outputs.describe_plan(timed)


def test_plan_for_image_rounds_tile_sizes_silently():
    layout = parse_axes("ZYX", (4, 100, 90))
    spec = NetworkSpec(depth=2, base_filters=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = outputs.plan_for_image((4, 100, 90), layout, spec, tile_size=50)
    assert plan.tile_in == (52, 52) and plan.shape == (100, 90)
    assert outputs.plan_for_image((4, 100, 90), layout, spec, tile_size=0).n_tiles == 1
    assert outputs.n_planes((4, 100, 90), layout) == 4
    assert outputs.n_planes((100, 90), parse_axes("YX", (100, 90))) == 1


def test_core_modules_of_the_widget_import_nothing_heavy():
    modules = "napari_tiled_unet.core.outputs, napari_tiled_unet.batch.models"
    modules += ", napari_tiled_unet.batch.settings, napari_tiled_unet._widgets._workers"
    heavy = ("tensorflow", "keras", "napari", "qtpy", "PyQt5", "PyQt6", "magicgui")
    code = f"import sys, {modules}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
