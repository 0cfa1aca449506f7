"""Make the README screenshots: napari with the nuclei sample and the plugin's widgets.

Usage (from the repository root; starts Xvfb itself when there is no display)::

    python docs/make_screenshots.py [--model MODEL.keras] [--only segment|train]

Windows are 1280 x 800 (``--size``), the size the docks are made to fit.
``segment_widget.png``: the Segment widget and the instance labels of the model (``--model``,
else the model bundled with the package).  ``train_widget.png``: the Train widget after a
short training run on the left half of the sample's ground truth (validated on the right
half), with its loss plot, the weight map of the labels and the new model listed in Segment.
Both runs go through the widgets' own buttons, as a user's would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: the bundled one)")
    parser.add_argument("--only", choices=("segment", "train"), help="make one screenshot")
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder of the PNG files")
    parser.add_argument("--size", default="1280x800", help="window size, WIDTHxHEIGHT")
    return parser.parse_args(argv)


def rerun_under_xvfb() -> None:
    """Without a display, run this script again inside xvfb-run."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("no display and no xvfb-run: install Xvfb (apt install xvfb) or run on a desktop")
    command = [xvfb, "-a", "-s", "-screen 0 1280x800x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(command))


def choose_model(requested: Path | None, folder: Path) -> Path:
    """The model to show; a chosen file is copied into the (temporary) models folder."""
    from napari_tiled_unet.batch.models import bundled_models

    if requested is not None:
        return Path(shutil.copy(requested, folder / requested.name))
    return bundled_models()[0]


def wait(widget: Any, seconds: float = 900) -> None:
    """Process Qt events until the widget's worker has finished."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    deadline = time.monotonic() + seconds
    while widget.worker is not None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def settle_and_grab(viewer: Any, out: Path) -> None:
    """Let the canvas and the docks settle, then save the whole window."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)


def new_viewer(size: str) -> Any:
    """A napari window of ``size`` with the nuclei sample (image and ground truth)."""
    import napari
    from napari.settings import get_settings

    # No warning toasts over the canvas (settings live in the temporary config folder).
    get_settings().application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-tiled-unet")
    width, height = (int(v) for v in size.split("x"))
    viewer.window.resize(width, height)
    viewer.open_sample("napari-tiled-unet", "nuclei2d")
    return viewer


def segment_screenshot(args: argparse.Namespace, model: Path) -> None:
    viewer = new_viewer(args.size)
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    widget.model.reset_choices()
    widget.model.value = str(model)  # Output auto: instance labels for the border class
    widget.run_button.clicked.emit()
    wait(widget)
    if not widget.status.value.startswith("Done"):
        sys.exit(f"the run did not finish: {widget.status.value}")
    viewer.layers.selection.active = viewer.layers["nuclei [unet labels]"]
    viewer.reset_view()
    out = args.out / "segment_widget.png"
    settle_and_grab(viewer, out)
    print(f"{out} ({model.name}: {widget.status.value})")
    viewer.close()


def train_screenshot(args: argparse.Namespace) -> None:
    viewer = new_viewer(args.size)  # the form scrolls in its dock
    image, truth = viewer.layers["nuclei"], viewer.layers["nuclei ground truth"]
    half = image.data.shape[1] // 2
    left = viewer.add_image(image.data[:, :half], name="nuclei left")
    painted = viewer.add_labels(truth.data[:, :half], name="nuclei left labels")
    right = viewer.add_image(image.data[:, half:], name="nuclei right", translate=(0, half))
    right_labels = viewer.add_labels(
        truth.data[:, half:], name="nuclei right labels", translate=(0, half)
    )
    for layer in (image, truth, right_labels):
        layer.visible = False
    _, segment = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Train", tabify=True)
    widget.image.value, widget.labels_layer.value = left, painted
    widget.add_pair.clicked.emit()
    widget.val_image.value, widget.val_labels.value = right, right_labels
    widget.depth.value, widget.base_filters.value = 3, 16
    widget.steps.value, widget.epochs.value = 100, 10
    widget.model_name.value, widget.overwrite.value = "nuclei_from_napari", True
    widget.weight_map_button.clicked.emit()
    wait(widget)
    started = time.perf_counter()
    widget.train_button.clicked.emit()
    wait(widget)
    seconds = time.perf_counter() - started
    if not widget.status.value.startswith("Done"):
        sys.exit(f"training did not finish: {widget.status.value}")
    listed = [Path(v).name for v in segment.model.choices if "nuclei_from_napari" in v]
    segment.image.value = right
    segment.model.value = next(v for v in segment.model.choices if "nuclei_from_napari" in v)
    segment.run_button.clicked.emit()
    wait(segment)
    viewer.layers.selection.active = painted
    viewer.reset_view()
    dock.raise_()  # the Train tab in front of Segment's
    out = args.out / "train_widget.png"
    settle_and_grab(viewer, out)
    print(f"{out} (training {seconds:.0f} s: {widget.status.value})")
    print(f"listed in Segment: {listed}; Segment on the right half: {segment.status.value}")
    viewer.close()


def main(argv: list[str] | None = None) -> None:
    rerun_under_xvfb()
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="ntu-screenshot-"))
    os.environ["NAPARI_TILED_UNET_MODELS"] = str(folder)  # only the chosen model is listed
    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")  # leave the user's settings alone

    # TensorFlow before the viewer, isolated from Mesa's LLVM (see _keras._isolated_dlopen).
    from napari_tiled_unet.core._keras import get_keras

    get_keras()
    model = choose_model(args.model, folder)
    try:
        if args.only in (None, "segment"):
            segment_screenshot(args, model)
        if args.only in (None, "train"):
            train_screenshot(args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
