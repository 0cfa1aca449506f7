"""bioimage.io packages: export validates and round-trips; zoo U-Nets run tiled == whole."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.spec", reason="needs the bioimageio extra")

from napari_tiled_unet import load_model, save_model, segment
from napari_tiled_unet.batch.bioimageio import (
    export_bioimageio,
    summary_line,
    validate_bioimageio,
)
from napari_tiled_unet.core.model.geometry import alignment, halo, smallest_valid_input_size
from napari_tiled_unet.core.model.zoo import is_bioimageio_source
from tests.conftest import tiny_unet
from tests.zoo_models import padded_unet, preprocess, write_package


def _onnx():
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnx", "onnxruntime"))


def _yaml(package):
    import yaml

    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """A 3-class depth-2 model, its file and its exported package."""
    folder = tmp_path_factory.mktemp("export")
    unet = tiny_unet(2, 4, num_classes=3)
    model_file = save_model(unet, folder / "tiny.keras")
    package = export_bioimageio(model_file, folder / "tiny.zip", authors=["A. Author"])
    return unet, model_file, package


def test_export_validates_offline_without_errors(ours):
    _, _, package = ours
    summary = validate_bioimageio(package)
    assert summary.status in ("valid-format", "passed")
    assert not [e for d in summary.details for e in d.errors]
    assert "0 errors" in summary_line(package)


def test_export_describes_the_valid_convolution_geometry_and_preprocessing(ours):
    unet, _, package = ours
    rdf = _yaml(package)
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5")
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "space", "space", "channel"]
    y = inp["axes"][1]
    assert y["size"] == {"min": smallest_valid_input_size(2), "step": alignment(2)}
    out_y = out["axes"][1]
    assert out_y["size"] == {"tensor_id": inp["id"], "axis_id": "y", "offset": -2 * halo(2)}
    assert out["axes"][3]["channel_names"] == ["background", "interior", "border"]
    (step,) = [p for p in inp["preprocessing"] if p["id"] != "ensure_dtype"]
    assert step["id"] == "scale_range"
    eps = float(step["kwargs"].pop("eps"))  # written 1e-06, a string to YAML 1.1 readers
    assert eps == 1e-6
    assert step["kwargs"] == {"axes": ["y", "x"], "min_percentile": 1.0, "max_percentile": 99.8}
    assert all(p["id"] != "softmax" for p in out.get("postprocessing", []))  # already softmax
    assert {"keras_v3", "tensorflow_saved_model_bundle"} <= set(rdf["weights"])
    assert ("onnx" in rdf["weights"]) == _onnx()
    assert rdf["weights"]["tensorflow_saved_model_bundle"]["parent"] == "keras_v3"
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert rdf["authors"] == [{"name": "A. Author"}] and rdf["license"] == "CC-BY-4.0"
    assert rdf["config"]["bioimageio"]["model_parameter_count"] == unet.keras_model.count_params()


def test_test_tensors_are_what_the_model_computes(ours):
    unet, _, package = ours
    with zipfile.ZipFile(package) as archive:
        x = np.load(archive.open("test_input.npy"))
        y = np.load(archive.open("test_output.npy"))
        readme = archive.read("README.md").decode()
    lo, hi = np.percentile(x, [1.0, 99.8])
    expected = unet.predict_batch((x - lo) / (hi - lo + 1e-6))
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert y.shape[1] == x.shape[1] - 2 * halo(2) and y.shape[-1] == 3
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert "## Validation" in readme and "Ronneberger" in readme
    assert "doi:10.1007/978-3-319-24574-4_28" in readme


def test_our_package_round_trips_exactly_as_zip_folder_and_yaml(ours, tmp_path):
    unet, model_file, package = ours
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    image = np.random.default_rng(0).random((70, 83)).astype(np.float32) * 100
    expected = segment(load_model(model_file), image).probabilities
    for source in (package, folder, folder / "rdf.yaml"):
        assert is_bioimageio_source(source)
        back = load_model(source)
        assert back.metadata == unet.metadata
        np.testing.assert_array_equal(segment(back, image).probabilities, expected)
    assert not is_bioimageio_source(model_file)


def test_saved_model_weights_reproduce_the_test_output(ours, tmp_path):
    from napari_tiled_unet.core._keras import get_tf

    tf = get_tf()
    _, _, package = ours
    with zipfile.ZipFile(package) as archive:
        x = np.load(archive.open("test_input.npy"))
        y = np.load(archive.open("test_output.npy"))
        archive.extract("tf_saved_model.zip", tmp_path)
    with zipfile.ZipFile(tmp_path / "tf_saved_model.zip") as inner:
        inner.extractall(tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    lo, hi = np.percentile(x, [1.0, 99.8])
    pre = tf.constant(((x - lo) / (hi - lo + 1e-6)).astype(np.float32))
    for name in ("serve", "serving_default"):
        out = loaded.signatures[name](raw=pre)
        assert list(out) == ["probabilities"]
        np.testing.assert_allclose(out["probabilities"].numpy(), y, atol=1e-5)


@pytest.mark.skipif(not _onnx(), reason="needs the onnx extra")
def test_onnx_weights_reproduce_the_test_output(ours, tmp_path):
    import onnxruntime

    _, _, package = ours
    with zipfile.ZipFile(package) as archive:
        x = np.load(archive.open("test_input.npy"))
        y = np.load(archive.open("test_output.npy"))
        archive.extract("model.onnx", tmp_path)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    lo, hi = np.percentile(x, [1.0, 99.8])
    pre = ((x - lo) / (hi - lo + 1e-6)).astype(np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: pre})
    np.testing.assert_allclose(out, y, atol=1e-5)


def test_export_refuses_what_it_cannot_write(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"end in \.zip"):
        export_bioimageio(tiny_unet(2, 4), tmp_path / "m.keras")
    padded = load_model(write_package(tmp_path / "zoo", padded_unet()))
    with pytest.raises(ValueError, match="padded convolutions"):
        export_bioimageio(padded, tmp_path / "p.zip")
    assert not (tmp_path / "p.zip").exists()
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(ImportError, match=r"pip install 'napari-tiled-unet\[bioimageio\]'"):
        export_bioimageio(tiny_unet(2, 4), tmp_path / "m.zip")


# --------------------------------------------------------------------------- zoo models
@pytest.fixture(scope="module")
def padded():
    return padded_unet(depth=2, base_filters=4)


def _direct(model, image, halo_px, step, softmax=True, pre="zero_mean_unit_variance"):
    """One pass over the whole mirror-padded image, cropped: what tiling must equal."""
    x = preprocess(image[None, ..., None].astype(np.float32), pre)
    h, w = image.shape
    extra = [(-(n + 2 * halo_px)) % step for n in (h, w)]
    padded = np.pad(
        x,
        ((0, 0), (halo_px, halo_px + extra[0]), (halo_px, halo_px + extra[1]), (0, 0)),
        mode="reflect",
    )
    out = np.asarray(model(padded.astype(np.float32)))
    if softmax:
        out = np.exp(out) / np.exp(out).sum(-1, keepdims=True)
    return out[0, halo_px : halo_px + h, halo_px : halo_px + w]


@pytest.mark.parametrize("described", [None, 4, 30])
def test_padded_zoo_unet_runs_tiled_equal_to_whole(tmp_path, padded, described):
    package = write_package(tmp_path / "zoo", padded, halo=described)
    assert not [e for d in validate_bioimageio(package).details for e in d.errors]
    unet = load_model(package)
    meta = unet.metadata
    # receptive field of 2 levels of 3x3 convolutions, pools and up-convolutions: 26 px,
    # rounded up to the pooling grid (4 px)
    assert meta.padded_halo == {None: 28, 4: 28, 30: 32}[described]
    assert meta.depth == 2 and meta.class_names == ("background", "nucleus")
    assert meta.normalization == {"method": "mean_std", "eps": 1e-6, "per": "plane"}
    image = np.random.default_rng(1).random((150, 130)).astype(np.float32) * 200
    tiled = segment(unet, image, tile_size=80)
    assert tiled.plan.n_tiles > 20 and tiled.plan.tile_out == (80 - 2 * meta.padded_halo,) * 2
    whole = segment(unet, image, tile_size=400)
    assert whole.plan.n_tiles == 1
    np.testing.assert_allclose(tiled.probabilities, whole.probabilities, atol=2e-6)
    expected = _direct(padded, image, meta.padded_halo, 4)
    np.testing.assert_allclose(tiled.probabilities, expected, atol=2e-6)


def test_padded_zoo_unet_with_percentiles_and_clip(tmp_path):
    model = padded_unet(depth=2, base_filters=4, seed=3, softmax=True)
    package = write_package(
        tmp_path / "zoo", model, preprocessing="scale_range", postprocessing=None
    )
    unet = load_model(package)
    assert unet.metadata.normalization == {
        "method": "percentile",
        "low": 2.0,
        "high": 99.0,
        "per": "plane",
        "eps": 1e-6,
    }
    image = np.random.default_rng(2).random((90, 100)).astype(np.float32) * 1000
    got = segment(unet, image, tile_size=76).probabilities
    expected = _direct(
        model, image, unet.metadata.padded_halo, 4, softmax=False, pre="scale_range"
    )
    np.testing.assert_allclose(got, expected, atol=2e-6)
    with zipfile.ZipFile(package) as archive:  # the package's own test reproduces
        x = np.load(archive.open("test_input.npy"))
        y = np.load(archive.open("test_output.npy"))
    full = segment(unet, x[0, ..., 0], tile_size=128).probabilities
    h = unet.metadata.padded_halo
    np.testing.assert_allclose(full[h:-h, h:-h], y[0, h:-h, h:-h], atol=1e-5)


@pytest.mark.parametrize(
    "variation, match",
    [
        ({"axes": ("batch", "z", "y", "x", "channel")}, "3D model"),
        ({"axes": ("batch", "channel", "y", "x")}, "channels last"),
        ({"weights": "torchscript"}, "torchscript weights; napari-tiled-unet runs Keras"),
        ({"postprocessing": None, "preprocessing": None}, None),
    ],
)
def test_what_cannot_run_is_refused_in_one_line(tmp_path, padded, variation, match):
    package = write_package(tmp_path / "zoo", padded, **variation)
    if match is None:  # no processing at all is fine: raw values, logits as given
        assert load_model(package).metadata.normalization is None
        return
    with pytest.raises(ValueError, match=match) as info:
        load_model(package)
    assert "\n" not in str(info.value)


def test_unknown_preprocessing_is_refused(tmp_path, padded):
    package = write_package(tmp_path / "zoo", padded, zipped=False)
    rdf = package / "rdf.yaml"
    text = rdf.read_text().replace("id: zero_mean_unit_variance", "id: binarize")
    rdf.write_text(text.replace("axes: [y, x]\n          eps: 1.0e-6", "threshold: 0.5"))
    with pytest.raises(ValueError, match="preprocessing step 'binarize' is not supported"):
        load_model(package)


def test_receptive_field_of_the_papers_unet_covers_its_halo():
    from napari_tiled_unet import build_unet
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.receptive import receptive_field

    field = receptive_field(build_unet(depth=4, base_filters=2))
    assert field.alignment == 16 and field.radius >= halo(4)
    keras = get_keras()
    inputs = keras.Input((None, None, 1))
    odd = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        receptive_field(odd)


@pytest.mark.skipif(
    not os.environ.get("BIOIMAGEIO_CORE_PYTHON"),
    reason="bioimageio.core pins another bioimageio.spec: set BIOIMAGEIO_CORE_PYTHON to a "
    "Python that has bioimageio.core and tensorflow",
)
def test_bioimageio_core_test_model_passes_on_our_export(ours):
    _, _, package = ours
    code = (
        "import sys; from bioimageio.core import test_model\n"
        "for wf in sys.argv[2:]:\n"
        "    s = test_model(sys.argv[1], weight_format=wf)\n"
        "    print(wf, s.status)\n"
    )
    formats = ["keras_v3", "tensorflow_saved_model_bundle"] + (["onnx"] if _onnx() else [])
    out = subprocess.run(
        [os.environ["BIOIMAGEIO_CORE_PYTHON"], "-c", code, str(package), *formats],
        capture_output=True,
        text=True,
        env={**os.environ, "BIOIMAGEIO_PERFORM_IO_CHECKS": "0"},
        timeout=900,
        cwd=package.parent,  # it unpacks the SavedModel into the working folder
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for wf in formats:
        assert f"{wf} passed" in out.stdout, out.stdout


def test_the_bundled_model_exports_valid(tmp_path):
    from napari_tiled_unet.batch.models import bundled_models
    from napari_tiled_unet.core.model.stock import is_stock_keras

    bundled = bundled_models()
    if not bundled:
        pytest.skip("no bundled model")
    package = export_bioimageio(bundled[0], tmp_path / "nuclei2d.zip", onnx=False)
    assert not [e for d in validate_bioimageio(package).details for e in d.errors]
    rdf = _yaml(package)
    meta = load_model(bundled[0]).metadata
    assert rdf["outputs"][0]["axes"][3]["channel_names"] == list(meta.class_names)
    assert "instance-segmentation" in rdf["tags"]
    back = load_model(package)
    assert is_stock_keras(back.keras_model)  # whatever the bundled file holds
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    np.testing.assert_array_equal(
        segment(back, image).probabilities, segment(load_model(bundled[0]), image).probabilities
    )


def test_cli_export_then_segment_with_the_package(tmp_path, capsys):
    import tifffile

    from napari_tiled_unet.cli.main import main

    model_file = save_model(tiny_unet(2, 4), tmp_path / "tiny.keras")
    image = (np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    status = main(
        [
            "export", str(model_file), "-o", str(tmp_path / "tiny.zip"), "--author", "A. B",
            "--author", "C. D", "--license", "MIT", "--tag", "cells", "--no-onnx",
            "--test-image", str(tmp_path / "cells.tif"),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"wrote {(tmp_path / 'tiny.zip').resolve()}" in out
    assert "validation (offline): valid-format, 0 errors" in out
    rdf = _yaml(tmp_path / "tiny.zip")
    assert [a["name"] for a in rdf["authors"]] == ["A. B", "C. D"] and rdf["license"] == "MIT"
    assert rdf["tags"] == ["cells"] and "onnx" not in rdf["weights"]
    with zipfile.ZipFile(tmp_path / "tiny.zip") as archive:
        x = np.load(archive.open("test_input.npy"))
    np.testing.assert_array_equal(x[0, :40, :50, 0], image)  # the test image, mirrored out
    assert main(["segment", str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out"),
                 "--model", str(tmp_path / "tiny.zip"), "-q"]) == 0  # fmt: skip
    labels = tifffile.imread(tmp_path / "out" / "cells_labels.tif")
    np.testing.assert_array_equal(labels, segment(model_file, image).labels)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    from napari_tiled_unet.cli.main import main

    assert main(["export", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "m.zip")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-tiled-unet: error: ")
    assert "does not exist" in err[0]


def test_models_folder_lists_packages_with_their_metadata(ours, tmp_path, monkeypatch):
    import shutil

    from napari_tiled_unet.batch import models

    unet, _, package = ours
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(package, folder / "tiny.zip")
    (folder / "photos.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive
    monkeypatch.setattr(models, "BUNDLED_MODELS_DIR", tmp_path / "none")
    found = models.find_models(folder)
    assert [c.name for c in found] == ["tiny.zip"]
    assert models.read_model_metadata(folder / "tiny.zip") == unet.metadata
    assert models.describe_model(folder / "tiny.zip").startswith("1 channel -> 3 classes")
