"""Make the README screenshot: napari with the nuclei sample, the Segment widget and its result.

Usage (from the repository root; starts Xvfb itself when there is no display)::

    python docs/make_screenshots.py [--model MODEL.keras] [--out docs/images/segment_widget.png]

The model is ``--model``, else the model bundled with the package.  Until a trained model is
bundled, the script builds ``demo-threshold-unet-untrained.keras``: a U-Net of the paper's
architecture (depth 4, 16 base filters) whose weights are set by hand, not trained, so that
it computes a smoothed intensity threshold.  It makes the picture readable; it is no
example of what a trained U-Net does.  Regenerate the screenshot once a model is bundled.
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

ROOT = Path(__file__).resolve().parents[1]
DEMO_NAME = "demo-threshold-unet-untrained.keras"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: bundled or demo)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "images" / "segment_widget.png"
    )
    parser.add_argument("--size", default="1500x900", help="window size, WIDTHxHEIGHT")
    return parser.parse_args(argv)


def rerun_under_xvfb() -> None:
    """Without a display, run this script again inside xvfb-run."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("no display and no xvfb-run: install Xvfb (apt install xvfb) or run on a desktop")
    command = [xvfb, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(command))


def demo_model(folder: Path) -> Path:
    """A paper-architecture U-Net with hand-set weights: smoothed intensity > threshold."""
    import numpy as np

    from napari_tiled_unet import build_unet, save_model

    model = build_unet(depth=4, base_filters=16, seed=0, name="demo_threshold_unet")
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])

    def pass_channel_zero(name: str, kernel: np.ndarray) -> None:
        weights, bias = model.get_layer(name).get_weights()
        weights[:, :, 0, 0] = kernel
        model.get_layer(name).set_weights([weights, bias])

    mean = np.full((3, 3), 1 / 9, np.float32)
    centre = np.zeros((3, 3), np.float32)
    centre[1, 1] = 1.0
    pass_channel_zero("down1_conv1", mean)  # smooth the normalised intensity twice
    pass_channel_zero("down1_conv2", mean)
    pass_channel_zero("up1_conv1", centre)  # the skip connection carries it up: channel 0
    pass_channel_zero("up1_conv2", centre)
    weights, bias = model.get_layer("classifier").get_weights()
    weights[0, 0, 0, 1], bias[1] = 20.0, -20.0 * 0.17  # p(foreground) = sigmoid(20 (x - 0.17))
    model.get_layer("classifier").set_weights([weights, bias])
    return save_model(model, folder / DEMO_NAME)


def choose_model(requested: Path | None, folder: Path) -> Path:
    """The model to show; a chosen file is copied into the (temporary) models folder."""
    from napari_tiled_unet.models import bundled_models

    if requested is not None:
        return Path(shutil.copy(requested, folder / requested.name))
    bundled = bundled_models()
    return bundled[0] if bundled else demo_model(folder)


def main(argv: list[str] | None = None) -> None:
    rerun_under_xvfb()
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="ntu-screenshot-"))
    os.environ["NAPARI_TILED_UNET_MODELS"] = str(folder)  # only the chosen model is listed
    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")  # leave the user's settings alone

    # TensorFlow before the viewer, isolated from Mesa's LLVM (see _keras._isolated_dlopen).
    from napari_tiled_unet._keras import get_keras

    get_keras()
    model = choose_model(args.model, folder)

    import napari
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    # No warning toasts over the canvas (settings live in the temporary config folder).
    get_settings().application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-tiled-unet")
    width, height = (int(v) for v in args.size.split("x"))
    viewer.window.resize(width, height)
    viewer.open_sample("napari-tiled-unet", "nuclei2d")
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    widget.model.reset_choices()
    widget.model.value = str(model)
    widget.output.value = "instance labels"
    widget.min_size.value = 20
    widget.run()
    app = QApplication.instance()
    assert app is not None  # napari.Viewer made it
    deadline = time.monotonic() + 600
    while widget.worker is not None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    if not widget.status.value.startswith("Done"):
        sys.exit(f"the run did not finish: {widget.status.value}")
    viewer.layers.selection.active = viewer.layers["nuclei [unet labels]"]
    viewer.reset_view()
    for _ in range(20):  # let the canvas and the dock settle before grabbing the window
        app.processEvents()
        time.sleep(0.05)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print(f"{args.out} ({model.name}: {widget.status.value})")
    viewer.close()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
