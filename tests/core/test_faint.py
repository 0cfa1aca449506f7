"""Faint objects (ghosts far dimmer than the nuclei of their plane) are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tiled_unet.core.outputs import channels_last, instances_of, labels_from_probabilities
from napari_tiled_unet.core.postprocess import drop_faint
from napari_tiled_unet.core.train.targets import instance_to_classes, one_hot

# (row, column, brightness above the background) of twelve nuclei, radius 7.
_NUCLEI = [
    (20 + 40 * (i // 4), 20 + 40 * (i % 4), b)
    for i, b in enumerate([1.0, 0.9, 1.1, 0.05, 1.0, 0.8, 0.5, 1.2, 0.04, 1.0, 0.35, 0.95])
]


def _scene(ramp: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and an image of :data:`_NUCLEI` on a background that rises by ``ramp``."""
    yy, xx = np.mgrid[:120, :160]
    labels = np.zeros((120, 160), np.int32)
    image = 0.1 + ramp * xx / 160.0
    for label, (cy, cx, bright) in enumerate(_NUCLEI, start=1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 49
        labels[disc] = label
        image = image + bright * disc
    noise = np.random.default_rng(0).normal(0, 0.01, image.shape)
    return labels, (image + noise).astype(np.float32)


def _bright(labels: np.ndarray) -> set[tuple[int, int]]:
    """Centres (as grid cells) of the objects kept."""
    return {
        (int(r) // 40, int(c) // 40)
        for r, c in (np.argwhere(labels == i).mean(0) for i in np.unique(labels)[1:])
    }


def test_faint_ghosts_go_and_dim_nuclei_stay() -> None:
    labels, image = _scene()
    kept = drop_faint(labels, image, 0.3)
    assert kept.max() == 10  # the two ghosts at 4-5 % of a nucleus are gone
    assert (0, 3) not in _bright(kept) and (2, 0) not in _bright(kept)
    assert (1, 2) in _bright(kept) and (2, 2) in _bright(kept)  # 50 % and 35 % nuclei stay
    assert drop_faint(labels, image, 0).max() == 12
    assert drop_faint(labels, image, 0.4).max() == 9  # the 35 % nucleus goes at 0.4


def test_contrast_is_measured_against_the_local_background() -> None:
    labels, image = _scene(ramp=3.0)  # background from 0.1 to 3.1, above most nuclei
    kept = drop_faint(labels, image, 0.3)
    assert kept.max() == 10
    assert (0, 3) not in _bright(kept) and (2, 0) not in _bright(kept)


def test_each_plane_is_judged_on_its_own_and_channels_are_averaged() -> None:
    labels, image = _scene()
    stack = np.stack([labels, labels * (labels % 2 == 0)])
    pixels = np.stack([image, image * 0.01])  # the second plane is dim overall
    kept = drop_faint(stack, pixels, 0.3)
    assert len(np.unique(kept[0])) - 1 == 10
    assert len(np.unique(kept[1])) - 1 == 5  # of 6 even objects only the ghost (8) goes
    two_channels = np.stack([image, image], axis=-1)
    np.testing.assert_array_equal(drop_faint(labels, two_channels, 0.3), drop_faint(labels, image))


def test_few_objects_or_dark_objects_are_left_alone() -> None:
    labels, image = _scene()
    two = np.where(np.isin(labels, [1, 4]), labels, 0)
    assert drop_faint(two, image, 0.3).max() == 2
    assert drop_faint(labels, -image, 0.3).max() == 12  # dark nuclei on a bright background


@pytest.mark.parametrize(
    ("image_shape", "contrast", "match"),
    [((120, 161), 0.3, "does not fit"), ((120, 160), 1.0, r"\[0, 1\)"), ((120, 160), -1, "min")],
)
def test_bad_arguments_raise(image_shape: tuple, contrast: float, match: str) -> None:
    labels, _ = _scene()
    with pytest.raises(ValueError, match=match):
        drop_faint(labels, np.zeros(image_shape), contrast)


def test_instances_and_relabelling_drop_faint_objects_where_the_image_is_given() -> None:
    labels, image = _scene()
    classes = instance_to_classes(labels, n_classes=3)
    assert instances_of(classes, 3, min_size=20).max() == 12
    assert instances_of(classes, 3, min_size=20, image=image).max() == 10
    assert instances_of(classes, 3, min_size=20, image=image, min_contrast=0).max() == 12
    probabilities = one_hot(np.stack([classes, classes]), 3).astype(np.float32)
    found = labels_from_probabilities(
        probabilities, axes="ZYX", kind="instances", min_size=20, image=np.stack([image, image])
    )
    assert found.max() == 20  # ids unique across the two planes
    cyx = np.stack([image, image * 2])  # two channels first
    np.testing.assert_array_equal(channels_last(cyx, "CYX"), np.stack([image, image * 2], -1))
    assert channels_last(image, "YX") is image
