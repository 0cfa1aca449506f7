import numpy as np
import tifffile

from napari_tiled_unet import save_model
from napari_tiled_unet.batch.png import overlay, write_png
from napari_tiled_unet.cli.main import main
from tests.conftest import tiny_unet


def test_png_writer_round_trips(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), rgb)


def test_overlay_outlines_objects():
    image = np.zeros((40, 40), np.float32)
    labels = np.zeros((40, 40), np.uint16)
    labels[10:20, 10:20] = 1
    image[labels > 0] = 100
    rgb = overlay(image, labels)
    assert rgb.shape == (40, 40, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[10, 15]) == (255, 220, 0)  # outline
    assert tuple(rgb[0, 0]) == (0, 0, 0)  # background stays dark


def test_demo_command_writes_labels_and_overlay(tmp_path, capsys):
    model = save_model(tiny_unet(2, 4, num_classes=3), tmp_path / "m.keras")
    assert main(["demo", "-o", str(tmp_path / "out"), "--model", str(model)]) == 0
    printed = capsys.readouterr().out
    assert str((tmp_path / "out" / "nuclei2d_overlay.png").resolve()) in printed
    labels = tifffile.imread(tmp_path / "out" / "nuclei2d_labels.tif")
    assert labels.shape == (512, 512)
    assert (tmp_path / "out" / "nuclei2d_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_with_a_bad_model_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.keras").write_text("nope")
    assert main(["demo", "-o", str(tmp_path / "out"), "--model", str(tmp_path / "bad.keras")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
