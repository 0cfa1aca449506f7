"""Augmentation: aligned transforms, label safety, mirrored borders, seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_tiled_unet.core.train.augment import (
    augment_pair,
    displacement_field,
    elastic_deform,
    grey_value_jitter,
    random_flip_rot90,
    warp,
)
from napari_tiled_unet.core.train.sampling import center_crop, sample_tile


def _blobs(shape: tuple[int, int] = (64, 80)) -> np.ndarray:
    """Label image of a few rectangles, labels 0..5."""
    labels = np.zeros(shape, dtype=np.uint16)
    rng = np.random.default_rng(1)
    for label in range(1, 6):
        y, x = rng.integers(0, shape[0] - 16), rng.integers(0, shape[1] - 16)
        labels[y : y + 16, x : x + 16] = label
    return labels


def test_displacement_field_interpolates_the_coarse_grid() -> None:
    field = displacement_field((101, 61), rng=np.random.default_rng(0), grid=3, sigma=10.0)
    coarse = np.random.default_rng(0).normal(0.0, 10.0, size=(2, 3, 3))
    assert field.shape == (2, 101, 61)
    for (i, j), (y, x) in {(0, 0): (0, 0), (1, 1): (50, 30), (2, 2): (100, 60)}.items():
        np.testing.assert_allclose(field[:, y, x], coarse[:, i, j], atol=1e-9)
    # Smooth: neighbouring pixels move almost alike.
    assert np.abs(np.diff(field, axis=1)).max() < 2.0
    assert np.abs(np.diff(field, axis=2)).max() < 2.0


def test_warp_without_displacement_is_identity() -> None:
    image = np.random.default_rng(0).random((12, 9, 2))
    zero = np.zeros((2, 12, 9))
    for order in (0, 1, 3):
        np.testing.assert_allclose(warp(image, zero, order=order), image, atol=1e-12)


def test_warp_mirrors_at_the_border() -> None:
    image = np.arange(30, dtype=np.int32).reshape(5, 6)
    shift = np.zeros((2, 5, 6))
    shift[1] = 3.0  # sample 3 px to the right
    expected = np.pad(image, ((0, 0), (0, 3)), mode="reflect")[:, 3:]
    np.testing.assert_array_equal(warp(image, shift, order=0), expected)
    np.testing.assert_array_equal(warp(image, shift, order=1), expected)


def test_elastic_keeps_labels_aligned_with_image() -> None:
    labels = _blobs()
    image = labels.astype(np.float32)
    weights = np.where(labels > 0, 2.0, 1.0).astype(np.float32)
    out_image, out_labels, out_weights = elastic_deform(
        image, labels, weights, rng=np.random.default_rng(3), sigma=10.0
    )
    assert out_labels.dtype == labels.dtype and out_image.dtype == np.float32
    assert set(np.unique(out_labels)) <= set(np.unique(labels))
    assert np.mean(out_labels != labels) > 0.02  # it did deform
    assert np.mean(np.rint(out_image) == out_labels) > 0.95
    # Cubic interpolation rings near label edges only; elsewhere it never misses by a label.
    edges = ndi.maximum_filter(out_labels, 5) != ndi.minimum_filter(out_labels, 5)
    assert np.abs(out_image - out_labels)[~edges].max() < 1.0
    assert np.mean(np.isclose(out_weights, np.where(out_labels > 0, 2.0, 1.0))) > 0.95


def test_elastic_nearest_neighbour_image_matches_labels_exactly() -> None:
    labels = _blobs()
    out_image, out_labels = elastic_deform(
        labels.astype(np.float32), labels, rng=np.random.default_rng(3), orders=(0, 0)
    )
    np.testing.assert_array_equal(out_image, out_labels)


def test_elastic_deforms_channels_identically() -> None:
    base = np.random.default_rng(0).random((40, 40))
    image = np.stack([base, 3.0 * base], axis=-1)
    (out,) = elastic_deform(image, rng=np.random.default_rng(5))
    assert out.shape == (40, 40, 2)
    np.testing.assert_allclose(out[..., 1], 3.0 * out[..., 0], atol=1e-9)


def test_elastic_is_deterministic_under_a_seed() -> None:
    labels = _blobs()
    image = labels.astype(np.float64)
    first = elastic_deform(image, labels, rng=np.random.default_rng(7))
    again = elastic_deform(image, labels, rng=np.random.default_rng(7))
    other = elastic_deform(image, labels, rng=np.random.default_rng(8))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_elastic_validates_inputs() -> None:
    image = np.zeros((10, 10))
    with pytest.raises(ValueError, match="one entry per array"):
        elastic_deform(image, image, rng=np.random.default_rng(0), orders=(3,))
    with pytest.raises(ValueError, match="share their"):
        elastic_deform(image, np.zeros((10, 11)), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="grid"):
        elastic_deform(image, rng=np.random.default_rng(0), grid=1)


def test_flip_rot90_applies_one_symmetry_to_all_arrays() -> None:
    image = np.arange(12).reshape(3, 4)
    stacked = np.stack([image, -image], axis=-1)
    symmetries = [np.rot90(image, k) for k in range(4)]
    symmetries += [s[:, ::-1] for s in symmetries]
    seen = set()
    for seed in range(40):
        a, b = random_flip_rot90(image, stacked, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(b[..., 0], a)
        np.testing.assert_array_equal(b[..., 1], -a)
        matches = [i for i, s in enumerate(symmetries) if s.shape == a.shape and (s == a).all()]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))


def test_grey_value_jitter_fixed_ranges_and_determinism() -> None:
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    rng = np.random.default_rng(0)
    linear = grey_value_jitter(image, rng=rng, gain=(2, 2), offset=(0.5, 0.5), gamma=(1, 1))
    np.testing.assert_allclose(linear, 2 * image + 0.5, rtol=1e-6)
    squared = grey_value_jitter(image, rng=rng, gain=(1, 1), offset=(0, 0), gamma=(2, 2))
    low, high = image.min(), image.max()
    np.testing.assert_allclose(squared, low + (high - low) * ((image - low) / (high - low)) ** 2)
    a = grey_value_jitter(image, rng=np.random.default_rng(4))
    b = grey_value_jitter(image, rng=np.random.default_rng(4))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    order = np.argsort(image, axis=None)
    assert np.all(np.diff(a.ravel()[order]) >= 0)  # monotonic: never inverts contrast


def test_grey_value_jitter_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="low <= high"):
        grey_value_jitter(np.zeros((2, 2)), rng=np.random.default_rng(0), gain=(1.2, 0.8))
    with pytest.raises(ValueError, match="> 0"):
        grey_value_jitter(np.zeros((2, 2)), rng=np.random.default_rng(0), gamma=(0, 1))


def test_sample_tile_shapes_and_centre_alignment() -> None:
    image = np.arange(50 * 60, dtype=np.int32).reshape(50, 60)
    rgb = np.stack([image, image], axis=-1)
    for seed in range(20):
        tile, target = sample_tile(
            rgb, image, input_size=28, output_size=12, rng=np.random.default_rng(seed)
        )
        assert tile.shape == (28, 28, 2) and target.shape == (12, 12)
        np.testing.assert_array_equal(center_crop(tile[..., 0], 12), target)
        y, x = divmod(int(target[0, 0]), 60)  # output window lies inside the image
        np.testing.assert_array_equal(target, image[y : y + 12, x : x + 12])


def test_sample_tile_mirrors_outside_the_image() -> None:
    image = np.random.default_rng(0).random((30, 30))
    tile, target = sample_tile(
        image, image, input_size=(20, 24), output_size=(12, 16), rng=None, origin=(0, 0)
    )
    padded = np.pad(image, 4, mode="reflect")
    np.testing.assert_array_equal(tile, padded[:20, :24])
    np.testing.assert_array_equal(target, image[:12, :16])


def test_sample_tile_works_for_images_smaller_than_the_tile() -> None:
    image = np.arange(25, dtype=np.uint8).reshape(5, 5)
    tile, target = sample_tile(
        image, image, input_size=40, output_size=20, rng=np.random.default_rng(0)
    )
    assert tile.shape == (40, 40) and target.shape == (20, 20)
    assert set(np.unique(tile)) == set(range(25))
    with pytest.raises(ValueError, match="even margin"):
        sample_tile(image, input_size=21, output_size=20, rng=np.random.default_rng(0))


def test_center_crop_rejects_odd_margins() -> None:
    with pytest.raises(ValueError, match="even margins"):
        center_crop(np.zeros((10, 10)), 7)


def test_augment_pair_is_consistent_and_seeded() -> None:
    labels = _blobs((48, 48))
    image = labels.astype(np.float32) / 5
    weights = np.ones(labels.shape, dtype=np.float32)
    out = augment_pair(image, labels, weights, rng=np.random.default_rng(2), jitter=False)
    again = augment_pair(image, labels, weights, rng=np.random.default_rng(2), jitter=False)
    for a, b in zip(out, again, strict=True):
        np.testing.assert_array_equal(a, b)
    out_image, out_labels, out_weights = out
    assert set(np.unique(out_labels)) <= set(np.unique(labels))
    assert np.mean(np.rint(out_image * 5) == out_labels) > 0.9
    exact_image, exact_labels, _ = augment_pair(
        image, labels, rng=np.random.default_rng(2), jitter=False, image_order=0
    )
    np.testing.assert_array_equal(np.rint(exact_image * 5), exact_labels)
    assert np.mean(exact_labels != labels) > 0.02
    np.testing.assert_allclose(out_weights, 1.0)
    jittered, _, none = augment_pair(image, labels, rng=np.random.default_rng(2))
    assert none is None and jittered.dtype == np.float32
    assert not np.allclose(jittered, out_image)


def test_sample_tile_needs_rng_or_origin() -> None:
    with pytest.raises(ValueError, match="needs rng"):
        sample_tile(np.zeros((8, 8)), input_size=8, output_size=4)
