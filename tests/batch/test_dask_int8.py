"""int8 on lazy (Dask) input: calibrated before the graph is built, the model held opaque."""

import importlib.util
import pickle

import dask
import dask.array as da
import numpy as np
import pytest

from napari_tiled_unet import segment
from napari_tiled_unet.batch import lazy
from napari_tiled_unet.batch.lazy import segment_lazy
from napari_tiled_unet.core import int8 as int8_module
from napari_tiled_unet.core.cache import CACHE_ENV_VAR
from tests.conftest import lenient_int8_gate, tiny_unet

pytest.importorskip("onnxruntime", reason="int8 needs the onnx extra (onnxruntime)")
# Looked up, not imported: tf2onnx imports TensorFlow, which must come through get_keras.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tf2onnx") is None, reason="int8 needs the onnx extra (tf2onnx)"
)


@pytest.fixture
def calls(tmp_path, monkeypatch):
    """A fresh cache, a gate any tiny U-Net passes, and the calibration sources of each run."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    lenient_int8_gate(monkeypatch)
    seen = {"sources": [], "quantize": 0}
    model, quantize = int8_module.int8_model, int8_module._quantize

    def counted_model(unet, sources, plan):
        seen["sources"].append(len(sources))
        return model(unet, sources, plan)

    def counted_quantize(*args):
        seen["quantize"] += 1
        return quantize(*args)

    monkeypatch.setattr(int8_module, "int8_model", counted_model)
    monkeypatch.setattr(int8_module, "_quantize", counted_quantize)
    return seen


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(0)
    data = rng.random((5, 96, 90)) * 300
    data[:, 30:60, 20:60] += 900  # some structure, so the labels are not all one class
    return data.astype(np.uint16)


def test_lazy_int8_calibrates_on_three_planes_and_equals_the_in_memory_run(stack, calls):
    unet = tiny_unet(2, 4, num_classes=3)
    options = {"axes": "ZYX", "precision": "int8", "tile_size": 60}
    with dask.config.set(scheduler="threads"):
        result = segment(unet, da.from_array(stack, chunks=(1, 48, 45)), lazy=True, **options)
        assert isinstance(result.probabilities, da.Array)
        assert calls == {"sources": [3], "quantize": 1}  # before anything is computed
        probs = result.probabilities.compute()
    assert result.int8.used == "int8" and result.int8.held_out == int8_module.HELD_OUT_TILES
    eager = segment(unet, stack, **options)  # the same planes and tiles: the cached model
    assert calls["quantize"] == 1 and eager.int8.cached and eager.int8.key == result.int8.key
    assert probs.shape == (5, 96, 90, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, eager.probabilities, rtol=0, atol=1e-6)
    float32 = segment(unet, stack, axes="ZYX", tile_size=60).probabilities
    assert 0 < np.abs(probs - float32).max() < 0.3  # int8 really ran


def test_int8_on_a_dask_array_in_memory_and_on_chunked_planes(stack, calls):
    unet = tiny_unet(2, 4, num_classes=3)
    options = {"axes": "ZYX", "precision": "int8", "tile_size": 60, "normalize": None}
    image = da.from_array(stack[:2].astype(np.float32) / 1000, chunks=(1, 96, 90))
    eager = segment(unet, image, **options)  # a dask array, numpy results
    assert isinstance(eager.probabilities, np.ndarray) and eager.int8.used == "int8"
    chunked = segment_lazy(unet, image, chunks=40, **options)
    assert len(chunked.probabilities.chunks[1]) > 1  # planes split into chunks
    assert calls["quantize"] == 1 and chunked.int8.cached
    np.testing.assert_allclose(chunked.probabilities.compute(), eager.probabilities, atol=1e-6)


def test_int8_refuses_a_distributed_client_in_one_line(stack, calls, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(distributed, "default_client", lambda: object())
    with pytest.raises(ValueError, match="int8 runs in this process only") as info:
        segment(tiny_unet(2, 4), stack, axes="ZYX", precision="int8", lazy=True)
    assert "\n" not in str(info.value) and "bfloat16" in str(info.value)
    assert calls["sources"] == []  # refused before calibrating


def test_the_held_int8_model_cannot_be_pickled_and_is_not_traversed(stack, calls):
    result = segment(
        tiny_unet(2, 4), stack[:1], axes="ZYX", precision="int8", tile_size=60, lazy=True
    )
    graph = dict(result.probabilities.__dask_graph__())
    held = [
        v for task in graph.values() for v in getattr(task, "kwargs", {}).values()
        if isinstance(v, lazy.Held)
    ]  # fmt: skip
    assert held and held[0].unet.precision == "int8" and held[0].unet.calibrated
    with pytest.raises(TypeError, match="int8 runs in this process only"):
        pickle.dumps(held[0])
