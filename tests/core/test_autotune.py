"""Tile timings: measured per machine and network, cached, and followed by automatic tiles."""

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_tiled_unet import segment
from napari_tiled_unet.core.autotune import tile_ladder, tune_tiles
from napari_tiled_unet.core.cache import CACHE_ENV_VAR, cache_dir
from napari_tiled_unet.core.prepare import prepare
from napari_tiled_unet.core.tiling import NetworkSpec, activation_bytes, plan_tiles, tile_flops
from napari_tiled_unet.core.timings import TileTimings, cached_timings, machine_id, save_timings
from tests.conftest import tiny_unet

PAPER = NetworkSpec(depth=4, base_filters=64, num_classes=2)


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))


def timings_for(spec, sizes, rate_of):
    """Timings where a tile of ``size`` runs at ``rate_of(size)`` FLOP/s."""
    flops = tuple(tile_flops(spec, (s, s)) for s in sizes)
    seconds = tuple(f / rate_of(s) for f, s in zip(flops, sizes))
    acts = tuple(activation_bytes(spec, (s, s)) for s in sizes)
    return TileTimings(tuple(sizes), seconds, acts, flops, machine_id(), "float32")


def test_timings_round_trip_and_reject_other_files():
    t = timings_for(PAPER, (572, 764, 1212), lambda s: 1e11)
    assert TileTimings.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    with pytest.raises(ValueError, match="not a napari-tiled-unet tile timing file"):
        TileTimings.from_dict({"format": "something else"})
    broken = t.to_dict() | {"seconds": [1.0]}
    with pytest.raises(ValueError, match="inconsistent"):
        TileTimings.from_dict(broken)


def test_call_seconds_interpolate_the_rate_and_stop_at_the_largest_tile():
    t = timings_for(PAPER, (572, 1212), lambda s: 1e11 if s == 572 else 2e11)
    assert t.call_seconds(PAPER, (572, 572)) == pytest.approx(tile_flops(PAPER, (572, 572)) / 1e11)
    assert t.call_seconds(PAPER, (1212, 1212)) == pytest.approx(
        tile_flops(PAPER, (1212, 1212)) / 2e11
    )
    middle = t.call_seconds(PAPER, (892, 892))
    rate = tile_flops(PAPER, (892, 892)) / middle
    assert 1e11 < rate < 2e11
    small = t.call_seconds(PAPER, (188, 188))  # below the ladder: the smallest tile's rate
    assert small == pytest.approx(tile_flops(PAPER, (188, 188)) / 1e11)
    assert t.call_seconds(PAPER, (1228, 1228)) is None


def test_measured_slow_large_calls_give_smaller_automatic_tiles():
    shape = (2048, 2048)
    flops_plan = plan_tiles(shape, PAPER, memory_budget="8GB")
    assert flops_plan.chosen_by == "flops"
    # A machine where calls above ~1 GiB of activations run at a fifth of the rate.
    slow_big = timings_for(
        PAPER, (572, 764, 956, 1212, 1532), lambda s: 2e11 if s <= 956 else 4e10
    )
    timed = plan_tiles(shape, PAPER, memory_budget="8GB", timings=slow_big)
    assert timed.chosen_by == "timings"
    assert timed.tile_in[0] <= 956 < flops_plan.tile_in[0]
    # Uniform rates up to a large tile: the measured choice may use it, the FLOP model may not
    # go past its 2 GiB call limit.
    even = timings_for(PAPER, (572, 1212, 1740), lambda s: 2e11)
    wide = plan_tiles(shape, PAPER, memory_budget="8GB", timings=even)
    assert activation_bytes(PAPER, wide.tile_in) <= activation_bytes(PAPER, (1740, 1740))
    assert plan_tiles(shape, PAPER, tile_size=572, timings=even).chosen_by == "request"


def test_tile_ladder_spans_the_budget():
    ladder = tile_ladder(PAPER, 2 * 2**30)
    assert len(ladder) == 6 and ladder == sorted(ladder)
    assert all(PAPER.output_size(s) for s in ladder)
    assert ladder[0] == PAPER.smallest_input_for_output(PAPER.alignment)
    assert activation_bytes(PAPER, (ladder[-1],) * 2) <= 2 * 2**30
    assert activation_bytes(PAPER, (ladder[-1] + PAPER.alignment,) * 2) > 2 * 2**30 * 0.9
    assert tile_ladder(PAPER, 1) == [ladder[0]]  # nothing fits: the smallest tile still


def test_tune_caches_timings_that_segment_follows():
    unet = tiny_unet(2, 4)
    seen = []
    timings = tune_tiles(unet, sizes=[92, 44, 140], progress=lambda s, t: seen.append(s))
    assert timings.sizes == (44, 92, 140) and [s for s in seen] == [44, 92, 140]
    assert all(s > 0 for s in timings.seconds)
    assert cached_timings(unet.spec) == timings
    assert cached_timings(unet.spec, "bfloat16") is None  # another precision: not tuned
    assert cached_timings(unet.spec, "int8") is None
    image = np.random.default_rng(1).random((300, 260)).astype(np.float32)
    job = prepare(unet, image)
    assert job.plan.chosen_by == "timings"
    assert job.plan.tile_in[0] <= 140  # never larger than the largest tile timed
    assert prepare(unet, image, tile_size=60).plan.chosen_by == "request"
    # The tile choice changes the work, not the result.
    timed = segment(unet, image).probabilities
    (next(cache_dir("tiles").glob("*.json"))).unlink()
    assert prepare(unet, image).plan.chosen_by == "flops"
    np.testing.assert_allclose(segment(unet, image).probabilities, timed, atol=1e-5)


def test_an_unreadable_cache_entry_is_ignored():
    unet = tiny_unet(2, 4)
    path = save_timings(timings_for(unet.spec, (44, 92), lambda s: 1e9), unet.spec)
    assert cached_timings(unet.spec) is not None
    path.write_text("{ not json", encoding="utf-8")
    assert cached_timings(unet.spec) is None


def test_bad_requests_are_one_line_errors():
    unet = tiny_unet(2, 4)
    with pytest.raises(ValueError, match="int8 runs through ONNX Runtime"):
        tune_tiles(unet, precision="int8")
    with pytest.raises(ValueError, match="not valid for this depth-2 U-Net; try"):
        tune_tiles(unet, sizes=[45])
    assert not list(cache_dir("tiles").glob("*.json"))


def test_machine_id_does_not_import_tensorflow():
    code = (
        "import sys; from napari_tiled_unet.core.timings import machine_id; "
        "print(machine_id()); print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert "cores" in lines[0] and "TensorFlow" in lines[0]
    assert lines[-1] == "False"
