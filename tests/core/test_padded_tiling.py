"""Tiles for padded ("same") networks, and the normalisers zoo models ask for (numpy only)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_tiled_unet.core.normalize import (
    MeanStdNormalizer,
    PercentileNormalizer,
    normalizer_from_dict,
)
from napari_tiled_unet.core.percentile import blocks_reducer, normalizer_statistics
from napari_tiled_unet.core.tiling import NetworkSpec, activation_bytes, plan_tiles

PADDED = NetworkSpec(depth=3, base_filters=8, padded_halo=24)


def test_padded_geometry_is_multiples_of_the_grid_minus_the_halo():
    assert PADDED.halo == 24 and PADDED.alignment == 8
    assert PADDED.output_size(128) == 80
    assert PADDED.output_size(124) is None  # not on the pooling grid
    assert PADDED.output_size(48) is None  # nothing left after the halo
    assert PADDED.smallest_input_for_output(1) == 56
    assert PADDED.smallest_input_for_output(80) == 128
    assert PADDED.nearest_valid_input_size(130) == 128
    assert PADDED.nearest_valid_input_size(132) == 136  # the larger on a tie
    assert PADDED.nearest_valid_input_size(10) == 56
    with pytest.warns(UserWarning, match="130.*multiples of 8.*128"):
        PADDED.nearest_valid_input_size(130, warn=True)
    valid = NetworkSpec(depth=4)
    assert valid.output_size(572) == 388 and valid.halo == 92


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 700), st.integers(1, 700), st.integers(60, 400))
def test_padded_plans_cover_the_image_with_valid_tiles(height, width, request):
    plan = plan_tiles((height, width), PADDED, tile_size=request)
    assert plan.halo == 24
    for t_in, t_out in zip(plan.tile_in, plan.tile_out):
        assert t_in % 8 == 0 and t_out == t_in - 48
    hits = np.zeros((height, width), int)
    for tile in plan.tiles():
        hits[tile.owned] += 1
        assert all(start % 8 == 0 for start in tile.output_start)
    assert (hits == 1).all()


def test_padded_networks_keep_their_size_in_the_memory_estimate():
    valid = NetworkSpec(depth=3, base_filters=8)
    assert activation_bytes(PADDED, (256, 256)) > activation_bytes(valid, (256, 256))
    assert activation_bytes(PADDED, (512, 512)) > 3.5 * activation_bytes(PADDED, (256, 256))


def test_mean_std_normaliser_streams_and_serialises():
    rng = np.random.default_rng(0)
    data = (rng.normal(300, 40, (3, 50, 60, 2))).astype(np.float32)
    norm = MeanStdNormalizer(eps=1e-6)
    lo, hi = norm.statistics(data)
    exact = data.reshape(-1, 2).astype(np.float64)
    np.testing.assert_allclose(lo, exact.mean(0), rtol=1e-6)
    np.testing.assert_allclose(hi - lo, exact.std(0) + 1e-6, rtol=1e-4)
    out = norm.apply(data, lo, hi)
    np.testing.assert_allclose(out.reshape(-1, 2).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(out.reshape(-1, 2).std(0), 1, atol=1e-4)
    streamed = normalizer_statistics(
        norm,
        blocks_reducer(lambda: (plane.reshape(-1, 2) for plane in data)),
        dtype=data.dtype,
        channels=2,
        count=data.size // 2,
    )
    np.testing.assert_allclose(streamed, (lo, hi), rtol=1e-6)
    assert normalizer_from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="per"):
        MeanStdNormalizer(per="image")


def test_percentile_eps_is_added_to_the_range_and_kept_out_of_old_files():
    data = np.arange(100, dtype=np.float32).reshape(10, 10, 1)
    plain, zoo = PercentileNormalizer(0, 100), PercentileNormalizer(0, 100, eps=1.0)
    assert plain.to_dict() == {"method": "percentile", "low": 0, "high": 100, "per": "plane"}
    assert normalizer_from_dict(zoo.to_dict()) == zoo
    np.testing.assert_allclose(zoo.apply(data, *zoo.statistics(data)).max(), 99 / 100)
    streamed = normalizer_statistics(
        zoo, blocks_reducer(lambda: [data.reshape(-1, 1)]), dtype=data.dtype, channels=1, count=100
    )
    np.testing.assert_array_equal(streamed, zoo.statistics(data))
