"""Appearance augmentation: deterministic, shape-keeping, and it really changes the look."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tiled_unet.core.train.appearance import appearance_jitter


def _tile(channels: bool) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:64, :64]
    classes = (((yy - 32) ** 2 + (xx - 32) ** 2) < 15**2).astype(np.uint8)
    image = 0.1 + 0.8 * classes.astype(np.float32)
    return (image[..., None] if channels else image), classes


@pytest.mark.parametrize("channels", [False, True])
def test_same_seed_same_tile_and_shape_kept(channels: bool) -> None:
    image, classes = _tile(channels)
    a = appearance_jitter(image, classes, rng=np.random.default_rng(5), object_size=30)
    b = appearance_jitter(image, classes, rng=np.random.default_rng(5), object_size=30)
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape and a.dtype == np.float32 and np.isfinite(a).all()


def test_draws_cover_dim_and_bright_contrast_and_blur() -> None:
    image, classes = _tile(False)
    inside, outside = classes == 1, classes == 0
    contrasts, edges = [], []
    for seed in range(60):
        out = appearance_jitter(image, classes, rng=np.random.default_rng(seed), object_size=30)
        contrasts.append(out[inside].mean() / max(out[outside].mean(), 1e-6))
        edges.append(np.abs(np.diff(out[32])).max())
    # Gain fields and background make the object/background ratio vary widely
    # around the input's 9x; blur softens the sharp edge of the disc in some draws.
    assert min(contrasts) < 4 < 10 < max(contrasts)
    assert min(edges) < 0.5 * 0.8 < max(edges)
