"""Class targets from instance labels: 2/3 classes, borders between touching objects."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_tiled_unet.core.train.targets import instance_to_classes, one_hot


def _touching_squares() -> np.ndarray:
    labels = np.zeros((8, 12), dtype=np.int32)
    labels[2:6, 2:6] = 1
    labels[2:6, 6:10] = 2
    return labels


def test_two_classes_is_foreground() -> None:
    labels = _touching_squares()
    classes = instance_to_classes(labels, n_classes=2)
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(classes, (labels > 0).astype(np.uint8))


def test_touching_objects_are_separated_by_border() -> None:
    classes = instance_to_classes(_touching_squares(), n_classes=3)
    expected = np.zeros((8, 12), dtype=np.uint8)
    expected[2:6, 2:10] = 2
    expected[3:5, 3:5] = 1
    expected[3:5, 7:9] = 1
    np.testing.assert_array_equal(classes, expected)


def test_interiors_of_different_objects_are_not_even_diagonal_neighbours() -> None:
    labels = np.zeros((9, 9), dtype=np.uint16)
    labels[1:5, 1:5] = 3
    labels[5:8, 5:8] = 7  # touches object 3 only at a corner
    classes = instance_to_classes(labels, n_classes=3)
    interior = np.where(classes == 1, labels, 0)
    grown = ndi.grey_dilation(interior, size=(3, 3))
    assert not np.any((interior > 0) & (grown != interior))
    assert classes[4, 4] == 2 and classes[5, 5] == 2


def test_border_width_thickens_inwards_and_image_edge_is_no_border() -> None:
    labels = np.zeros((20, 20), dtype=np.int64)
    labels[5:15, 0:10] = 1  # touches the left image edge
    thin = instance_to_classes(labels, n_classes=3, border_width=1)
    thick = instance_to_classes(labels, n_classes=3, border_width=2)
    assert np.count_nonzero(thin == 1) == 8 * 9  # no border along the image edge
    assert np.count_nonzero(thick == 1) == 6 * 8
    np.testing.assert_array_equal(thick > 0, labels > 0)


def test_object_filling_the_image_is_all_interior() -> None:
    classes = instance_to_classes(np.full((4, 5), 9, dtype=np.uint8), n_classes=3)
    np.testing.assert_array_equal(classes, np.ones((4, 5), dtype=np.uint8))


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (np.zeros((4, 4), dtype=np.float32), {}, "integer dtype"),
        (np.full((4, 4), -1, dtype=np.int32), {}, ">= 0"),
        (np.zeros((4, 4), dtype=np.int32), {"n_classes": 4}, "2 or 3"),
        (np.zeros((4, 4), dtype=np.int32), {"n_classes": 3, "border_width": 0}, "border_width"),
    ],
)
def test_invalid_inputs_raise(labels: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        instance_to_classes(labels, **kwargs)


def test_one_hot_roundtrip() -> None:
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, size=(6, 7)).astype(np.uint8)
    encoded = one_hot(classes, 3)
    assert encoded.shape == (6, 7, 3) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(encoded.argmax(axis=-1), classes)


def test_one_hot_rejects_out_of_range_and_float() -> None:
    with pytest.raises(ValueError, match=r"0\.\.1"):
        one_hot(np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="integer dtype"):
        one_hot(np.array([0.0, 1.0]), 2)
