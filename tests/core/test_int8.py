"""int8 through ONNX Runtime: export, calibration on the image, the gate, the cache."""

import importlib.util
import sys
import types
import warnings

import numpy as np
import pytest

from napari_tiled_unet import segment
from napari_tiled_unet.core import int8 as int8_module
from napari_tiled_unet.core import precision as precision_module
from napari_tiled_unet.core.cache import CACHE_ENV_VAR, atomic_path
from napari_tiled_unet.core.precision import PrecisionNote, PrecisionWarning
from tests.conftest import lenient_int8_gate, tiny_unet

pytest.importorskip("onnxruntime", reason="int8 needs the onnx extra (onnxruntime)")
# Looked up, not imported: tf2onnx imports TensorFlow, which must come through get_keras.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tf2onnx") is None, reason="int8 needs the onnx extra (tf2onnx)"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV_VAR, str(folder))
    return folder / "int8"


@pytest.fixture
def lenient(monkeypatch):
    """A gate that any int8 model passes."""
    lenient_int8_gate(monkeypatch)


def _image(shape=(120, 110), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random(shape) * 200
    image[30:60, 20:70] += 600  # some structure, so the labels are not all one class
    return image.astype(np.uint16)


def _run(*args, **kwargs):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = segment(*args, **kwargs)
    notes = [str(w.message) for w in seen if issubclass(w.category, PrecisionNote)]
    problems = [
        str(w.message)
        for w in seen
        if issubclass(w.category, PrecisionWarning) and not issubclass(w.category, PrecisionNote)
    ]
    return result, notes, problems


def test_float32_onnx_export_equals_keras_for_any_batch_and_tile_size(tmp_path):
    from napari_tiled_unet.core.onnx_export import export_onnx, ort_session, session_call

    unet = tiny_unet(2, 4, num_classes=3)
    opset = export_onnx(unet.keras_model, tmp_path / "m.onnx", input_size=(44, 44))
    assert opset >= 13
    call = session_call(ort_session(tmp_path / "m.onnx", threads=1))
    rng = np.random.default_rng(0)
    for shape in ((1, 44, 44, 1), (3, 60, 76, 1)):
        x = rng.random(shape, dtype=np.float32)
        expected = unet.predict_batch(x)
        got = call(x)
        assert got.shape == expected.shape == (shape[0], shape[1] - 40, shape[2] - 40, 3)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_int8_segments_with_shape_and_dtype_and_says_so_once(cache, lenient):
    unet = tiny_unet(2, 4, num_classes=3)
    image = _image()
    reference = segment(unet, image)
    result, notes, problems = _run(unet, image, precision="int8")
    assert result.probabilities.shape == (120, 110, 3)
    assert result.probabilities.dtype == np.float32
    assert result.labels.shape == (120, 110) and result.labels.dtype == np.uint8
    np.testing.assert_allclose(result.probabilities.sum(-1), 1, atol=1e-5)  # float32 softmax
    gate = result.int8
    assert gate.used == "int8" and gate.held_out == int8_module.HELD_OUT_TILES
    assert 0 <= gate.agreement <= 1 and 0 <= gate.border_iou <= 1 and gate.speedup > 0
    assert len(notes) == 1 and notes[0].startswith("int8: ") and "held-out tiles" in notes[0]
    assert problems == []
    diff = np.abs(result.probabilities - reference.probabilities)
    assert 0 < diff.max() < 0.3  # int8 really ran: close to float32, not equal to it
    assert len(list(cache.glob("*.onnx"))) == 1 and len(list(cache.glob("*.json"))) == 1


def test_the_classifier_and_softmax_stay_float32(cache, lenient):
    import onnx

    segment(tiny_unet(2, 4, num_classes=3), _image(), precision="int8")
    graph = onnx.load(str(next(cache.glob("*.onnx")))).graph
    producers = {out: node for node in graph.node for out in node.output}
    softmax = next(n for n in graph.node if n.op_type == "Softmax")
    classifier = producers[softmax.input[0]]
    assert classifier.op_type == "Conv"
    initializers = {i.name for i in graph.initializer}
    assert classifier.input[1] in initializers  # a float weight, not a DequantizeLinear
    assert all(producers[i].op_type != "DequantizeLinear" for i in softmax.input)
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 5  # the rest is int8


@pytest.mark.parametrize("native_bf16, expected", [(False, "float32"), (True, "bfloat16")])
def test_a_failed_gate_falls_back_with_one_warning(cache, monkeypatch, native_bf16, expected):
    monkeypatch.setattr(int8_module, "MIN_AGREEMENT", 1.01)  # unreachable
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: native_bf16)
    unet = tiny_unet(2, 4, num_classes=3)
    image = _image()
    result, notes, problems = _run(unet, image, precision="int8")
    assert notes == [] and len(problems) == 1
    assert "int8 does not agree well enough with float32" in problems[0]
    assert problems[0].endswith(f"using {expected}") and "\n" not in problems[0]
    assert result.int8.used == expected and not result.int8.passed
    same = segment(unet.variant(precision=expected), image, precision=expected)
    np.testing.assert_array_equal(result.probabilities, same.probabilities)


def test_the_gate_passes_a_model_that_meets_the_bar(cache, monkeypatch):
    unet = tiny_unet(2, 4, num_classes=3)
    result, notes, problems = _run(unet, _image(), precision="int8")
    gate = result.int8
    # The bar the gate applies is the stated one, whatever this tiny model reaches.
    meets = gate.agreement >= 0.995 and gate.border_iou >= 0.90
    assert gate.passed == meets and (gate.used == "int8") == (meets and gate.speedup >= 1)
    assert (len(notes), len(problems)) == ((1, 0) if gate.used == "int8" else (0, 1))
    monkeypatch.setattr(int8_module, "MIN_AGREEMENT", gate.agreement)  # exactly met
    monkeypatch.setattr(int8_module, "MIN_BORDER_IOU", gate.border_iou)
    monkeypatch.setattr(int8_module, "MIN_SPEEDUP", gate.speedup)
    again, notes, problems = _run(unet, _image(), precision="int8")
    assert again.int8.used == "int8" and again.int8.cached and len(notes) == 1


@pytest.mark.parametrize("native_bf16, expected", [(False, "float32"), (True, "bfloat16")])
def test_int8_that_is_not_faster_than_float32_is_not_used(
    cache, lenient, monkeypatch, native_bf16, expected
):
    monkeypatch.setattr(int8_module, "MIN_SPEEDUP", 1e9)  # unreachable
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: native_bf16)
    unet = tiny_unet(2, 4, num_classes=3)
    result, notes, problems = _run(unet, _image(), precision="int8")
    assert notes == [] and len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith("int8 is not faster than float32 for this model here (")
    assert problems[0].endswith(f"using {expected}")
    gate = result.int8
    assert gate.passed and not gate.faster and gate.used == expected
    assert gate.to_dict()["faster"] is False


def test_the_speed_up_is_measured_at_the_run_s_tile_size(monkeypatch):
    unet = tiny_unet(2, 4, num_classes=3)
    held_out = np.random.default_rng(0).random((4, 92, 92, 1)).astype(np.float32)
    shapes = []
    pace = {"float32": 2.0, "int8": 1.0}  # seconds per call of the larger tile

    def timed(model, tiles):
        shapes.append((model.precision, tiles.shape[1:3]))
        seconds = pace[model.precision] if tiles.shape[1] > 92 else 1.0
        return np.stack([np.asarray(model.predict_batch(t[None]))[0] for t in tiles]), seconds

    monkeypatch.setattr(int8_module, "_timed", timed)
    float32 = unet.variant(precision="float32")
    int8 = types.SimpleNamespace(precision="int8", predict_batch=float32.predict_batch)
    same = int8_module._measure(float32, int8, held_out, "k", (92, 92))
    larger = int8_module._measure(float32, int8, held_out, "k", (140, 132))
    assert same.speedup == 1.0 and shapes[:2] == [("float32", (92, 92)), ("int8", (92, 92))]
    assert shapes[-2:] == [("float32", (140, 132)), ("int8", (140, 132))]
    assert larger.speedup == 2.0 and larger.agreement == same.agreement == 1.0


def test_the_pace_of_int8_reads_as_faster_or_slower():
    assert int8_module._pace(2.94) == "2.9x faster"
    assert int8_module._pace(1.0) == "1.0x faster"
    assert int8_module._pace(0.8) == "1.2x slower"


def test_the_second_run_reuses_the_cached_model_and_gate(cache, lenient, monkeypatch):
    calls = {"quantize": 0, "measure": 0}
    for name in calls:
        original = getattr(int8_module, f"_{name}")

        def counted(*args, _original=original, _name=name):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(int8_module, f"_{name}", counted)
    unet, image = tiny_unet(2, 4, num_classes=3), _image()
    first = segment(unet, image, precision="int8")
    model = next(cache.glob("*.onnx"))
    stamp = model.stat().st_mtime_ns
    second = segment(unet, image, precision="int8")
    assert calls == {"quantize": 1, "measure": 1}
    assert model.stat().st_mtime_ns == stamp and second.int8.cached and not first.int8.cached
    assert second.int8.agreement == first.int8.agreement
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    segment(unet, _image(seed=1), precision="int8")  # other data: calibrated anew
    assert calls["quantize"] == 2 and len(list(cache.glob("*.onnx"))) == 2


def test_a_failed_quantisation_leaves_nothing_in_the_cache(cache, lenient, monkeypatch):
    from onnxruntime import quantization

    def broken(source, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"half a model")
        raise RuntimeError("quantiser crashed")

    monkeypatch.setattr(quantization, "quantize_static", broken)
    with pytest.raises(RuntimeError, match="quantiser crashed"):
        segment(tiny_unet(2, 4, num_classes=3), _image(), precision="int8")
    assert list(cache.iterdir()) == []


def test_atomic_path_writes_all_or_nothing(tmp_path):
    target = tmp_path / "gate.json"
    with pytest.raises(OSError):
        with atomic_path(target) as part:
            part.write_text("partial")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as part:
        part.write_text("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["gate.json"] and target.read_text() == "whole"


def test_without_onnxruntime_int8_says_how_to_install_and_runs_float32(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    unet, image = tiny_unet(2, 4, num_classes=3), _image()
    result, notes, problems = _run(unet, image, precision="int8")
    assert notes == []
    assert len(problems) == 1 and 'pip install "napari-tiled-unet[onnx]"' in problems[0]
    assert "using float32" in problems[0] and "\n" not in problems[0]
    assert result.int8 is None and not cache.exists()
    np.testing.assert_array_equal(result.probabilities, segment(unet, image).probabilities)


def test_tiled_equals_whole_image_with_one_int8_session(cache, lenient):
    from napari_tiled_unet.core.prepare import prepare

    unet, image = tiny_unet(2, 4, num_classes=3), _image((150, 140))
    job = prepare(unet, image, precision="int8", normalize="none")
    quantised = int8_module.int8_model(job.unet, [(image[..., None], None)], job.plan)
    assert quantised.precision == "int8"
    whole = segment(quantised, image, precision="int8", normalize="none", tile_size=500)
    assert whole.plan.n_tiles == 1
    for size in (44, 60, 92):
        tiled = segment(quantised, image, precision="int8", normalize="none", tile_size=size)
        assert tiled.plan.n_tiles > 1
        # Integer arithmetic inside and fixed scales: bit-identical here (max |dp| 0.0 with
        # ONNX Runtime 1.32 on x86); the tolerance only allows kernels that round by shape.
        np.testing.assert_allclose(tiled.probabilities, whole.probabilities, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(tiled.labels, whole.labels)


def test_calibration_and_held_out_tiles_differ_and_spread():
    from napari_tiled_unet.core.tiling import plan_tiles

    unet = tiny_unet(2, 4)
    plane = np.arange(200 * 180, dtype=np.float32).reshape(200, 180, 1)
    plan = plan_tiles((200, 180), unet.spec, tile_size=60)
    tiles = int8_module.sample_tiles([(plane, None)], plan, 12)
    assert tiles.shape == (12, 60, 60, 1) and tiles.dtype == np.float32
    corners = {float(t[40, 40, 0]) for t in tiles}  # a pixel inside the image
    assert len(corners) == 12  # no two tiles alike
    rows = sorted({int(t[40, 40, 0]) // 180 for t in tiles})
    assert rows[0] < 60 and rows[-1] > 100  # from the top and the bottom of the plane


def test_an_int8_variant_must_be_calibrated_before_it_runs():
    unet = tiny_unet(2, 4)
    raw = unet.variant(precision="int8")
    assert raw.precision == "int8" and not raw.calibrated and unet.calibrated
    with pytest.raises(ValueError, match="quantised on the images it segments"):
        raw.predict_batch(np.zeros((1, 44, 44, 1), np.float32))


def test_a_fallback_leaves_the_float32_model_as_it_was(cache, monkeypatch):
    monkeypatch.setattr(int8_module, "MIN_AGREEMENT", 1.01)
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: False)
    unet, image = tiny_unet(2, 4, num_classes=3), _image()
    assert _run(unet, image, precision="int8")[0].int8.used == "float32"
    assert unet.int8 is None and segment(unet, image).int8 is None


def test_checking_the_onnx_extra_does_not_import_tensorflow():
    """tf2onnx imports TensorFlow; loaded that way (not through get_keras) it aborts napari."""
    import subprocess

    code = (
        "import sys; from napari_tiled_unet.core.onnx_export import missing_onnx; "
        "assert missing_onnx() is None; print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_large_planned_tiles_calibrate_on_smaller_tiles_of_the_same_grid():
    """The calibrator holds every activation of every tile: large tiles would not fit."""
    from napari_tiled_unet.core.tiling import plan_tiles

    unet = tiny_unet(3, 4)
    big = plan_tiles((3000, 3000), unet.spec, tile_size=1500)
    small = int8_module._calibration_plan(unet, big)
    assert max(small.tile_in) <= int8_module.CALIBRATION_TILE < max(big.tile_in)
    assert small.shape == big.shape and small.halo == big.halo
    modest = plan_tiles((300, 300), unet.spec)
    assert int8_module._calibration_plan(unet, modest) == modest


@pytest.mark.parametrize(
    "kind, message",
    [
        ("Fail", "Failed to allocate memory for requested buffer of size 1099511627776"),
        ("RuntimeException", "Non-zero status code returned while running Conv node: bad_alloc"),
    ],
)
def test_onnx_runtime_allocation_failures_retry_smaller_and_warn_once(
    cache, lenient, monkeypatch, kind, message
):
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    from napari_tiled_unet.core.memory import OutOfMemoryWarning

    unet, image = tiny_unet(2, 4, num_classes=3), _image((150, 140))
    options = {"precision": "int8", "tile_size": 60, "batch_size": 4}
    expected = segment(unet, image, **options)  # calibrates; the run below finds the cache
    error = getattr(state, kind)(f"[ONNXRuntimeError] : {message}")
    real, shapes = onnxruntime.InferenceSession.run, []

    def run(self, names, feeds, *args, **kwargs):
        (batch,) = feeds.values()
        shapes.append(batch.shape[:3])
        if batch.shape[0] > 1 or batch.shape[1] == 60:  # only one smaller tile fits
            raise error
        return real(self, names, feeds, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", run)
    with pytest.warns(OutOfMemoryWarning, match="out of memory with 4 tile") as said:
        result = segment(unet, image, **options)
    said = [str(w.message) for w in said if issubclass(w.category, OutOfMemoryWarning)]
    assert len(said) == 1 and "continuing with 2 of 60 x 60 px" in said[0]
    assert shapes[:4] == [(4, 60, 60), (2, 60, 60), (1, 60, 60), (1, 48, 48)]
    assert set(shapes[3:]) == {(1, 48, 48)}  # later batches start at the smaller size
    assert result.int8.cached and result.int8.used == "int8"
    # sub-tiles on the pooling grid with fixed int8 scales: the same numbers
    np.testing.assert_allclose(result.probabilities, expected.probabilities, rtol=0, atol=1e-6)


def test_other_onnx_runtime_errors_are_not_out_of_memory():
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    from napari_tiled_unet.core.memory import is_out_of_memory

    assert not is_out_of_memory(state.InvalidArgument("[ONNXRuntimeError] : 2 : wrong rank"))
    assert not is_out_of_memory(state.Fail("[ONNXRuntimeError] : 1 : FAIL : node failed"))
    assert not is_out_of_memory(RuntimeError("Failed to allocate memory"))  # not ONNX Runtime
    assert is_out_of_memory(state.Fail("Failed to allocate memory for requested buffer"))


@pytest.mark.parametrize("before", [None, "TRUE"])
def test_export_optimises_in_place_and_repeats_the_default_way_if_that_fails(
    tmp_path, monkeypatch, before
):
    """tf2onnx copies the graph before each optimiser unless TF2ONNX_CATCH_ERRORS is set."""
    import os

    from napari_tiled_unet.core.onnx_export import export_onnx

    if before is None:
        monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    else:
        monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", before)
    unet = tiny_unet(2, 4, num_classes=3)
    x = np.random.default_rng(0).random((1, 60, 60, 1), dtype=np.float32)
    expected = unet.predict_batch(x)
    model_class = type(unet.keras_model)
    real, seen = model_class.export, []

    def export(self, *args, **kwargs):
        seen.append(os.environ.get("TF2ONNX_CATCH_ERRORS"))
        if len(seen) == 1:
            raise RuntimeError("an optimiser failed on the graph")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "export", export)
    assert export_onnx(unet.keras_model, tmp_path / "m.onnx", input_size=(44, 44)) >= 13
    assert seen == ["FALSE", before]  # in place first, then as the converter does by default
    assert os.environ.get("TF2ONNX_CATCH_ERRORS") == before  # left as it was
    np.testing.assert_array_equal(unet.predict_batch(x), expected)  # the model is untouched


def test_sessions_run_without_the_memory_arena_unless_told(tmp_path, monkeypatch):
    from napari_tiled_unet.core import onnx_export

    onnx_export.export_onnx(tiny_unet(2, 4).keras_model, tmp_path / "m.onnx", input_size=(44, 44))
    session = onnx_export.ort_session(tmp_path / "m.onnx", threads=1)
    assert session.get_session_options().enable_cpu_mem_arena is False
    monkeypatch.setitem(onnx_export.SESSION_OPTIONS, "enable_cpu_mem_arena", True)
    again = onnx_export.ort_session(tmp_path / "m.onnx", threads=1)
    assert again.get_session_options().enable_cpu_mem_arena is True


def test_calibration_planes_do_not_depend_on_the_order_planes_run_in(monkeypatch):
    """A live run starts with the plane on view; it must calibrate on the CLI's planes."""
    from napari_tiled_unet.core import predict

    seen = []

    def fake_int8_model(unet, sources, plan):
        seen.append([float(plane.mean()) for plane, _ in sources])
        raise RuntimeError("stop after calibration")

    monkeypatch.setattr(int8_module, "int8_model", fake_int8_model)
    stack = np.stack([_image(seed=k) + 100 * k for k in range(7)])
    for order in (None, [(4,), (0,), (1,), (2,), (3,), (5,), (6,)]):
        run = predict.iter_segment(
            tiny_unet(2, 4), stack, axes="ZYX", precision="int8", planes=order
        )
        with pytest.raises(RuntimeError, match="stop after calibration"):
            next(run)
    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) == 3
