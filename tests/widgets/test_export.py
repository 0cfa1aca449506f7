"""The "Export..." buttons of the Segment and Train widgets (napari under Xvfb): wiring only.

What the package holds is tested in test_bioimageio.py; here the buttons must ask once,
remember the answers, export the right model off the main thread and report in one line.
"""

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.spec", reason="needs the bioimageio extra")

from napari_tiled_unet import save_model
from napari_tiled_unet._widgets import _export
from tests.conftest import tiny_unet
from tests.widgets.test_train import blobs, open_train, wait

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("user_folders")]


@pytest.fixture
def answers(monkeypatch, tmp_path):
    """Answer the export dialog; record what it was asked with."""
    asked = []
    reply = {"output": tmp_path / "out" / "tiny", "authors": "A. B, C. D", "license": "MIT"}
    reply["tags"] = "cells"

    def ask(model, remembered):
        asked.append((model, dict(remembered)))
        return None if reply.get("cancel") else dict(reply)

    monkeypatch.setattr(_export, "ask_export_options", ask)
    return asked, reply


def _wait_export(qtbot, widget):
    qtbot.waitUntil(lambda: widget._export.worker is None, timeout=120_000)


def test_segment_exports_the_chosen_model_and_remembers_who_made_it(
    make_napari_viewer, qtbot, tmp_path, answers, notes
):
    asked, reply = answers
    model = save_model(tiny_unet(2, 4), tmp_path / "tiny.keras")
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    widget.model_file.value = model
    widget.export_button.clicked()
    assert widget.status.value.startswith("Exporting tiny.keras to tiny.zip")
    _wait_export(qtbot, widget)
    package = tmp_path / "out" / "tiny.zip"  # the .zip ending added
    assert package.is_file(), widget.status.value
    assert widget.status.value.startswith("Exported tiny.zip; bioimageio.spec")
    assert "0 errors" in widget.status.value
    with zipfile.ZipFile(package) as archive:
        rdf = archive.read("rdf.yaml").decode()
    assert "name: A. B" in rdf and "name: C. D" in rdf and "license: MIT" in rdf
    assert "- cells" in rdf and "- unet" in rdf  # extra tags join the defaults
    assert asked[0][0] == model.resolve()
    assert asked[0][1] == _export.EXPORT_DEFAULTS  # first time: the defaults
    stored = json.loads(_export.export_settings_path().read_text())
    assert stored["authors"] == "A. B, C. D" and stored["license"] == "MIT"
    reply["cancel"] = True
    widget.export_button.clicked()
    assert asked[1][1]["authors"] == "A. B, C. D"  # asked once: remembered since
    assert widget._export.worker is None  # cancelled: nothing runs


def test_segment_export_errors_are_one_sentence(
    make_napari_viewer, qtbot, tmp_path, answers, notes
):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    widget.export_button.clicked()  # no model chosen
    assert widget.status.value == "No model to export; choose or train one first."
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model")
    widget._export.start(garbage)
    _wait_export(qtbot, widget)
    assert widget.status.value.startswith("garbage.keras is not a Keras model file")
    assert all("Traceback" not in message for _, message in notes)


def test_train_exports_the_model_it_just_trained(make_napari_viewer, qtbot, tmp_path, answers):
    viewer = make_napari_viewer()
    image, labels = blobs(0)
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells labels")
    widget = open_train(viewer, steps=2, epochs=1)
    assert not widget.export_button.enabled  # nothing trained yet
    widget.image.value = viewer.layers["cells"]
    widget.labels_layer.value = viewer.layers["cells labels"]
    widget.train()
    wait(qtbot, widget)
    assert widget.export_button.enabled
    widget.export_button.clicked()
    _wait_export(qtbot, widget)
    asked, _ = answers
    assert asked[0][0] == tmp_path / "models" / "tiny.keras"
    package = tmp_path / "out" / "tiny.zip"
    assert package.is_file() and widget.status.value.startswith("Exported tiny.zip")
    with zipfile.ZipFile(package) as archive:
        output = np.load(archive.open("test_output.npy"))
    assert output.shape[-1] == 2
