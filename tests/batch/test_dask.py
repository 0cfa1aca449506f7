"""Lazy segmentation with dask and zarr: equal to the in-memory engine, never loaded whole."""

import threading

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from napari_tiled_unet import PercentileNormalizer, save_model, segment
from napari_tiled_unet.batch.lazy import segment_lazy
from napari_tiled_unet.batch.modelref import ModelRef, get_model
from napari_tiled_unet.batch.segment import segment_to_zarr
from napari_tiled_unet.batch.zarrio import open_zarr
from tests.conftest import tiny_unet


def assert_close(lazy, eager, atol=1e-5):
    # Chunks call the network with other batch sizes than the whole plane, and TensorFlow's
    # CPU kernels may round differently per batch size (seen on AVX2-only CPUs).
    np.testing.assert_allclose(lazy.probabilities, eager.probabilities, atol=atol)
    assert (np.asarray(lazy.labels) == eager.labels).mean() >= 0.9999


@pytest.fixture(scope="module")
def stack():
    return (np.random.default_rng(0).random((3, 150, 131)) * 4000).astype(np.uint16)


@pytest.mark.parametrize("normalize", ["auto", None, PercentileNormalizer(per="stack")])
def test_whole_plane_chunks_are_bit_identical(stack, normalize):
    unet = tiny_unet(2, 4)
    eager = segment(unet, stack, axes="ZYX", normalize=normalize, tile_size=60)
    lazy = segment(
        unet,
        da.from_array(stack, chunks=(1, 50, 50)),
        axes="ZYX",
        normalize=normalize,
        tile_size=60,
        lazy=True,
    )
    assert isinstance(lazy.probabilities, da.Array) and isinstance(lazy.labels, da.Array)
    assert lazy.probabilities.chunks[:3] == ((1, 1, 1), (150,), (131,))
    np.testing.assert_array_equal(lazy.probabilities.compute(), eager.probabilities)
    np.testing.assert_array_equal(lazy.labels.compute(), eager.labels)


@pytest.mark.parametrize("normalize", ["auto", None])
def test_chunked_planes_match_the_whole_plane(stack, normalize):
    """Output-aligned chunks with the halo as overlap, mirrored at the image border."""
    unet = tiny_unet(3, 4)
    eager = segment(unet, stack, axes="ZYX", normalize=normalize, tile_size=108)
    lazy = segment_lazy(unet, stack, axes="ZYX", normalize=normalize, tile_size=108, chunks=40)
    ys, xs = lazy.probabilities.chunks[1:3]
    assert len(ys) > 2 and len(xs) > 1
    edges = np.cumsum((0, *ys))[1:-1]
    assert set(edges) <= set(eager.plan.origins[0]) and all(e % 8 == 0 for e in edges)
    # Unnormalised counts (up to 4000) make large activations, so the rounding above is
    # larger in absolute terms: 4.7e-5 measured.
    assert_close(lazy, eager, atol=1e-5 if normalize else 2e-4)


@pytest.mark.parametrize("chunks", [16, 32, (32, 48), 40])
def test_any_chunk_size_reads_the_context_its_last_tile_needs(chunks):
    """A chunk's last tile may run past the chunk (the shifted last tile owns the rest)."""
    unet = tiny_unet(2, 4, num_classes=3)
    image = np.random.default_rng(2).random((2, 96, 90)).astype(np.float32)
    eager = segment(unet, image, axes="ZYX", tile_size=60, object_size="none")
    assert eager.plan.origins[1][-1] - eager.plan.origins[1][-2] < eager.plan.tile_out[1]
    lazy = segment_lazy(unet, image, axes="ZYX", tile_size=60, object_size="none", chunks=chunks)
    assert all(len(c) > 1 for c in lazy.probabilities.chunks[1:3])
    assert_close(lazy, eager)


@pytest.mark.parametrize("chunks", [None, 64])
def test_out_of_memory_in_a_lazy_run_retries_with_smaller_calls(monkeypatch, chunks):
    from napari_tiled_unet.core.memory import OutOfMemoryWarning, fallback_of
    from napari_tiled_unet.core.model.files import wrap_keras_model

    image = np.random.default_rng(3).random((2, 200, 180)).astype(np.float32)
    keywords = dict(axes="ZYX", tile_size=196, batch_size=1, normalize=None, chunks=chunks)
    expected = segment_lazy(wrap_keras_model(tiny_unet(3, 4).keras_model), image, **keywords)
    unet = wrap_keras_model(tiny_unet(3, 4).keras_model)
    real, sizes = unet.predict_batch, []

    def predict(batch):
        sizes.append(batch.shape[1:3])
        if len(sizes) <= 2:
            raise MemoryError()
        return real(batch)

    monkeypatch.setattr(unet, "predict_batch", predict)
    lazy = segment_lazy(unet, image, **keywords)
    with dask.config.set(scheduler="synchronous"), pytest.warns(OutOfMemoryWarning) as said:
        probabilities = lazy.probabilities.compute()
    assert len(said) == 1
    assert sizes[0] == (196, 196) and sizes[1] == (140, 140) and sizes[-1] == (116, 116)
    np.testing.assert_allclose(probabilities, expected.probabilities.compute(), atol=1e-5)
    assert fallback_of(unet, lazy.plan) == {"batch_size": 1, "tile_in": [116, 116]}


def test_axes_order_and_channels_follow_segment():
    unet = tiny_unet(2, 4, input_channels=2, num_classes=3)
    image = np.random.default_rng(1).random((2, 40, 2, 37)).astype(np.float32)  # Z Y C X
    eager = segment(unet, image, axes="ZYCX")
    lazy = segment(unet, image, axes="ZYCX", lazy=True, chunks=(24, 24))
    assert lazy.axes == eager.axes == "ZYX" and lazy.probabilities.shape == (2, 40, 37, 3)
    assert_close(lazy, eager)


def test_a_dask_layer_is_read_one_plane_at_a_time(stack):
    reads = []
    lock = threading.Lock()

    def load(block, block_info=None):
        with lock:
            reads.append(block_info[None]["chunk-location"][0])
        return stack[
            block_info[None]["array-location"][0][0] : block_info[None]["array-location"][0][1]
        ]

    layer = da.map_blocks(load, da.zeros(stack.shape, chunks=(1, 150, 131)), dtype=stack.dtype)
    result = segment(tiny_unet(2, 4), layer, axes="ZYX", lazy=True)
    plane = result.labels[1].compute()
    assert set(reads) == {1}
    expected = segment(tiny_unet(2, 4), stack[1])
    np.testing.assert_array_equal(plane, expected.labels)


def test_zarr_array_and_ome_zarr_inputs(stack, tmp_path):
    unet = tiny_unet(2, 4)
    eager = segment(unet, stack, axes="ZYX")
    array = zarr.create_array(
        tmp_path / "plain.zarr", shape=stack.shape, chunks=(1, 64, 64), dtype=stack.dtype
    )
    array[:] = stack
    np.testing.assert_array_equal(segment(unet, array, axes="ZYX").labels, eager.labels)
    group = zarr.open_group(tmp_path / "image.ome.zarr", mode="w")
    level = group.create_array(
        "0", shape=(1, *stack.shape), chunks=(1, 1, 75, 131), dtype=stack.dtype
    )
    level[:] = stack[None]
    axes = [{"name": n, "type": t} for n, t in zip("czyx", ("channel", "space", "space", "space"))]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{"axes": axes, "datasets": [{"path": "0"}]}],
    }
    image, found = open_zarr(tmp_path / "image.ome.zarr")
    assert found == "CZYX" and isinstance(image, da.Array)
    from_path = segment(unet, tmp_path / "image.ome.zarr")
    np.testing.assert_array_equal(from_path.labels, eager.labels)
    lazy = segment(unet, str(tmp_path / "image.ome.zarr"), lazy=True)
    np.testing.assert_array_equal(lazy.labels.compute(), eager.labels)
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(ValueError, match="multiscales"):
        open_zarr(tmp_path / "empty.zarr")
    with pytest.raises(ValueError, match="not a zarr"):
        open_zarr(tmp_path / "missing.zarr")


def test_segment_to_zarr_streams_the_result(stack, tmp_path):
    unet = tiny_unet(2, 4)
    out = segment_to_zarr(
        unet,
        stack,
        tmp_path / "seg.zarr",
        axes="ZYX",
        probabilities=True,
        probability_dtype="float16",
        chunks=64,
    )
    eager = segment(unet, stack, axes="ZYX")
    group = zarr.open_group(out, mode="r")
    assert group.attrs["axes"] == "ZYX" and group["probabilities"].dtype == np.float16
    assert (group["labels"][:] == eager.labels).mean() >= 0.9999
    np.testing.assert_allclose(group["probabilities"][:], eager.probabilities, atol=1e-3)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        segment_to_zarr(unet, stack, out, axes="ZYX")


def test_model_ref_loads_once_and_refuses_a_changed_file(tmp_path):
    from napari_tiled_unet.batch import modelref as lazy

    path = save_model(tiny_unet(2, 4), tmp_path / "m.keras")
    ref = ModelRef.from_path(path)
    before = lazy.LOADS[0]
    first = get_model(ref)
    assert get_model(ref) is first and lazy.LOADS[0] == before + 1
    save_model(tiny_unet(2, 4, seed=3), path)
    with pytest.raises(ValueError, match="changed"):
        get_model(ModelRef(str(path), ref.sha256[::-1]))
    with dask.config.set(scheduler="threads"):
        result = segment_lazy(path, np.zeros((30, 30), np.float32))
        assert result.labels.compute().shape == (30, 30)


def test_eager_segment_reads_a_dask_stack_plane_by_plane(stack):
    unet = tiny_unet(2, 4)
    norm = PercentileNormalizer(per="stack", low=3, high=97)
    eager = segment(unet, stack, axes="ZYX", normalize=norm)
    lazy_input = da.from_array(stack, chunks=(1, 150, 131))
    with dask.config.set(scheduler="sync"):
        result = segment(unet, lazy_input, axes="ZYX", normalize=norm)
    assert isinstance(result.probabilities, np.ndarray)
    np.testing.assert_array_equal(result.probabilities, eager.probabilities)


def test_lazy_runs_the_precision_and_augmentation_asked_for(monkeypatch):
    from napari_tiled_unet.core import precision as precision_module

    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)
    unet = tiny_unet(2, 4)
    image = np.random.default_rng(5).random((2, 90, 70)).astype(np.float32)
    options = {"axes": "ZYX", "normalize": None, "precision": "bfloat16", "tta": "flips"}
    eager = segment(unet, image, **options)
    plain = segment(unet, image, axes="ZYX", normalize=None)
    lazy = segment_lazy(unet, image, **options)
    np.testing.assert_allclose(lazy.probabilities.compute(), eager.probabilities, atol=1e-6)
    assert np.abs(eager.probabilities - plain.probabilities).max() > 1e-3


def test_a_model_that_has_an_int8_variant_segments_lazily(stack):
    """A float32 model and its int8 variant name each other: dask must not walk them."""
    from napari_tiled_unet.core.model.files import wrap_keras_model

    unet = wrap_keras_model(tiny_unet(2, 4).keras_model)
    assert not unet.variant(precision="int8").calibrated  # the pair now exists
    eager = segment(unet, stack[:2], axes="ZYX", tile_size=60)
    lazy = segment(unet, stack[:2], axes="ZYX", tile_size=60, lazy=True)
    np.testing.assert_array_equal(lazy.probabilities.compute(), eager.probabilities)
