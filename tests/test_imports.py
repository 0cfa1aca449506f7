import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "tensorflow",
    "keras",
    "napari",
    "qtpy",
    "PyQt5",
    "PySide2",
    "PySide6",
    "PyQt6",
    "bioimageio",
    "onnxruntime",
    "onnx",
    "tf2onnx",
)


_SRC = Path(__file__).resolve().parents[1] / "src"
#: The custom Keras layer is defined at import, so only model loading imports it.
KERAS_LAYERS = "napari_tiled_unet.core.model.layers"
#: Every other module of the core ring, found on disk.
CORE = sorted(
    {
        ".".join(path.relative_to(_SRC).with_suffix("").parts).removesuffix(".__init__")
        for path in (_SRC / "napari_tiled_unet" / "core").rglob("*.py")
    }
    - {KERAS_LAYERS}
)


@pytest.mark.parametrize(
    "module",
    [
        *CORE,
        "napari_tiled_unet",
        "napari_tiled_unet.cli.main",
        "napari_tiled_unet.cli.segment",
        "napari_tiled_unet.cli.errors",
        "napari_tiled_unet.batch.files",
        "napari_tiled_unet.data",
        "napari_tiled_unet._sample_data",
        "napari_tiled_unet.batch.run",
        "napari_tiled_unet.batch.lazy",
        "napari_tiled_unet.batch.segment",
        "napari_tiled_unet.batch.png",
        "napari_tiled_unet.cli.train",
        "napari_tiled_unet.batch.models",
        "napari_tiled_unet.cli.demo",
        "napari_tiled_unet._widgets._batch_text",
        "napari_tiled_unet._widgets._train_text",
        "napari_tiled_unet._widgets._workers",
        "napari_tiled_unet.batch.settings",
        "napari_tiled_unet.batch.results",
        "napari_tiled_unet.batch.bioimageio",
        "napari_tiled_unet.cli.export",
    ],
)
def test_no_heavy_imports(module):
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_resolves_lazily():
    code = (
        "import sys, napari_tiled_unet as n; n.halo; "
        "assert 'keras' not in sys.modules; n.build_unet(depth=0, base_filters=1); "
        "assert 'keras' in sys.modules; assert set(dir(n)) >= set(n.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
