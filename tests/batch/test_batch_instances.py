import numpy as np
import pytest
import tifffile

from napari_tiled_unet import load_model, save_model, segment
from napari_tiled_unet.cli.main import main
from napari_tiled_unet.core.postprocess import classes_to_instances, drop_faint
from tests.conftest import tiny_unet


@pytest.fixture
def stack(tmp_path):
    data = (np.random.default_rng(0).random((2, 60, 50)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", data, imagej=True, metadata={"axes": "ZYX"})
    return tmp_path / "s.tif", data


def run(tmp_path, path, model, *extra):
    out = tmp_path / "out"
    assert main(["segment", str(path), "-o", str(out), "--model", str(model), "-q", *extra]) == 0
    return tifffile.imread(out / "s_labels.tif")


def test_three_class_models_write_instances_by_default(tmp_path, stack):
    path, data = stack
    model = save_model(tiny_unet(2, 4, num_classes=3, seed=5), tmp_path / "m3.keras")
    labels = run(tmp_path, path, model, "--min-size", "3")
    assert labels.dtype == np.uint16 and labels.shape == (2, 60, 50)
    classes = segment(load_model(model), data, axes="ZYX").labels
    for z in range(2):
        expected = drop_faint(classes_to_instances(classes[z], min_size=3), data[z])
        np.testing.assert_array_equal(labels[z], expected)


def test_classes_on_request_and_instances_for_two_class_models(tmp_path, stack):
    path, data = stack
    model3 = save_model(tiny_unet(2, 4, num_classes=3, seed=5), tmp_path / "m3.keras")
    classes = run(tmp_path, path, model3, "--output", "classes", "--overwrite")
    assert classes.dtype == np.uint8 and set(np.unique(classes)) <= {0, 1, 2}
    model2 = save_model(tiny_unet(2, 4), tmp_path / "m2.keras")
    instances = run(
        tmp_path,
        path,
        model2,
        *("--output", "instances", "--min-size", "0", "--min-contrast", "0", "--overwrite"),
    )
    foreground = segment(load_model(model2), data, axes="ZYX").labels == 1
    for z in range(2):
        np.testing.assert_array_equal(instances[z] > 0, foreground[z])
        assert instances[z].max() == classes_to_instances(foreground[z]).max()
