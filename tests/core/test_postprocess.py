"""Instance labels from class output: split at borders, drop small objects, relabel."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tiled_unet.core.postprocess import classes_to_instances, relabel_sequential
from napari_tiled_unet.core.train.targets import instance_to_classes, one_hot


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True if two label images are equal up to renumbering of the objects."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def _touching_disks() -> np.ndarray:
    yy, xx = np.mgrid[:60, :90]
    labels = np.zeros((60, 90), dtype=np.int32)
    for label, (cy, cx, r) in enumerate([(30, 25, 15), (30, 52, 13), (12, 75, 8)], start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 < r**2) & (labels == 0)] = label
    return labels


def test_border_line_splits_two_touching_objects() -> None:
    classes = np.zeros((9, 13), dtype=np.uint8)
    classes[1:8, 1:12] = 2  # one blob outlined by border ...
    classes[2:7, 2:6] = 1  # ... with two interiors separated by a border column
    classes[2:7, 7:11] = 1
    instances = classes_to_instances(classes)
    assert instances.dtype == np.uint16
    assert set(np.unique(instances)) == {0, 1, 2}
    assert instances[4, 3] != instances[4, 9]
    np.testing.assert_array_equal(instances > 0, classes > 0)  # the border is shared out


def test_roundtrip_of_three_class_targets_recovers_touching_objects() -> None:
    labels = _touching_disks()
    instances = classes_to_instances(instance_to_classes(labels, n_classes=3))
    assert instances.max() == 3
    assert _same_partition(instances, labels)


def test_probabilities_give_the_same_result_as_classes() -> None:
    classes = instance_to_classes(_touching_disks(), n_classes=3)
    rng = np.random.default_rng(0)
    probabilities = one_hot(classes, 3) * 0.7 + rng.random((*classes.shape, 3)) * 0.2
    np.testing.assert_array_equal(
        classes_to_instances(probabilities), classes_to_instances(classes)
    )


def test_two_class_output_is_connected_components() -> None:
    foreground = np.zeros((10, 10), dtype=bool)
    foreground[1:4, 1:4] = True
    foreground[6:9, 2:9] = True
    instances = classes_to_instances(foreground)
    assert instances.max() == 2
    assert _same_partition(
        instances, foreground.astype(np.int32) * (1 + (np.arange(10) > 4))[:, None]
    )


def test_min_size_removes_small_objects_and_relabels_consecutively() -> None:
    classes = np.zeros((20, 20), dtype=np.uint8)
    classes[1:3, 1:3] = 1  # 4 px
    classes[5:10, 5:10] = 1  # 25 px
    classes[12:18, 12:18] = 1  # 36 px
    classes[15, 1] = 2  # stray border pixel without interior: background
    instances = classes_to_instances(classes, min_size=10)
    assert set(np.unique(instances)) == {0, 1, 2}
    assert np.count_nonzero(instances == 1) == 25 and np.count_nonzero(instances == 2) == 36
    assert instances[15, 1] == 0


def test_connectivity_decides_whether_diagonal_interiors_merge() -> None:
    classes = np.zeros((6, 6), dtype=np.uint8)
    classes[1:3, 1:3] = 1
    classes[3:5, 3:5] = 1
    assert classes_to_instances(classes, connectivity=1).max() == 2
    assert classes_to_instances(classes, connectivity=2).max() == 1


def test_relabel_sequential_widens_dtype_for_many_objects() -> None:
    labels = np.arange(70_000, dtype=np.int64).reshape(350, 200) * 3
    out = relabel_sequential(labels)
    assert out.dtype == np.uint32 and out.max() == 69_999
    np.testing.assert_array_equal(np.unique(out), np.arange(70_000))


@pytest.mark.parametrize(
    ("prediction", "kwargs", "match"),
    [
        (np.zeros((8, 8)), {}, "last axis"),
        (np.full((4, 4), -1, dtype=np.int8), {}, ">= 0"),
        (np.zeros((4, 4), dtype=np.uint8), {"border_class": 1}, "must differ"),
        (np.zeros((4, 4), dtype=np.uint8), {"min_size": -1}, "min_size"),
        (np.zeros((4, 4), dtype=np.uint8), {"connectivity": 3}, "connectivity"),
        (np.zeros((4, 4), dtype=np.complex64), {}, "integer or bool"),
    ],
)
def test_invalid_inputs_raise(prediction: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classes_to_instances(prediction, **kwargs)


def test_roundtrip_on_the_bundled_nuclei_recovers_almost_every_nucleus() -> None:
    from napari_tiled_unet.data import nuclei2d

    _, labels = nuclei2d()
    instances = classes_to_instances(instance_to_classes(labels, n_classes=3))
    # Known losses of 1-px borders: a 2-px-thin nucleus has no interior, a pinched one splits.
    recovered = 0
    for label in np.unique(labels)[1:]:
        values, counts = np.unique(instances[labels == label], return_counts=True)
        recovered += values[counts.argmax()] > 0 and counts.max() >= 0.95 * counts.sum()
    assert recovered >= 123
    assert abs(int(instances.max()) - 125) <= 2


def _cut_nuclei(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generated touching nuclei: exact 3-class targets, and a copy with stray border
    pixels inside every nucleus and a short cut through every second one (what a network
    does on textured chromatin)."""
    from napari_tiled_unet.core.train.synthetic import NucleiStyle, synthetic_nuclei

    rng = np.random.default_rng(seed)
    _, labels = synthetic_nuclei((384, 384), 30, rng=rng, style=NucleiStyle(touching=0.5))
    clean = instance_to_classes(labels, n_classes=3)
    noisy = clean.copy()
    ys, xs = np.nonzero(clean == 1)
    pick = rng.choice(len(ys), size=len(ys) // 40, replace=False)
    noisy[ys[pick], xs[pick]] = 2
    for label in range(1, int(labels.max()) + 1, 2):
        yy, xx = np.nonzero(labels == label)
        row = yy == int(np.median(yy))
        cut = (yy[row], xx[row])
        noisy[cut] = np.where(clean[cut] == 1, 2, clean[cut])
    return labels, clean, noisy


def test_merge_keeps_textured_nuclei_whole_and_touching_ones_apart() -> None:
    from napari_tiled_unet.core.metrics import fragmentation, match_instances

    labels, clean, noisy = _cut_nuclei(0)
    merged = classes_to_instances(noisy, min_size=20)
    seeds = classes_to_instances(noisy, min_size=20, method="seeds")
    over_merge, _ = fragmentation(merged, labels)
    over_seeds, _ = fragmentation(seeds, labels)
    assert over_seeds > 0.3 and over_merge < 0.7 * over_seeds
    assert match_instances(merged, labels).f1 > match_instances(seeds, labels).f1 + 0.02
    # Real borders between touching nuclei still split them.
    whole = classes_to_instances(clean)
    assert match_instances(whole, labels).f1 > 0.93
    _, under = fragmentation(whole, labels)
    assert under < 0.05


def test_merge_heals_a_border_island_and_rejects_unknown_methods() -> None:
    classes = np.zeros((30, 60), np.uint8)
    classes[5:25, 5:25] = 2
    classes[6:24, 6:24] = 1
    classes[14:16, 14:16] = 2  # a stray border blob inside the nucleus
    classes[12:18, 10:11] = 2  # and a short stroke beside it
    classes[5:25, 30:50] = 2
    classes[6:24, 6 + 25 : 24 + 25] = 1
    out = classes_to_instances(classes)
    assert out.max() == 2 and set(np.unique(out[5:25, 5:25]).tolist()) == {1}
    with pytest.raises(ValueError, match="method must be"):
        classes_to_instances(classes, method="magic")


@pytest.mark.parametrize("shape", [(1, 1), (7,), (40, 50), (6, 20, 30)])
def test_seeds_grow_ring_by_ring_as_a_whole_image_maximum_filter_would(shape) -> None:
    from scipy import ndimage as ndi

    from napari_tiled_unet.core.postprocess import _grow_into

    def reference(labels: np.ndarray, region: np.ndarray) -> np.ndarray:
        footprint = ndi.generate_binary_structure(labels.ndim, labels.ndim)
        todo = region & (labels == 0)
        while todo.any():
            grown = ndi.maximum_filter(labels, footprint=footprint, mode="constant", cval=0)
            reached = todo & (grown > 0)
            if not reached.any():
                break
            labels[reached] = grown[reached]
            todo &= ~reached
        return labels

    rng = np.random.default_rng(3)
    for border_share in (0.2, 0.5, 0.8):
        classes = rng.choice(3, size=shape, p=[0.1, 0.9 - border_share, border_share])
        seeds, _ = ndi.label(classes == 1)
        expected = reference(seeds.copy(), classes == 2)
        np.testing.assert_array_equal(_grow_into(seeds.copy(), classes == 2), expected)
