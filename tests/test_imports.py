import subprocess
import sys

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
)


@pytest.mark.parametrize(
    "module",
    [
        "napari_tiled_unet",
        "napari_tiled_unet.model.geometry",
        "napari_tiled_unet.tiling",
        "napari_tiled_unet.normalize",
        "napari_tiled_unet.predict",
        "napari_tiled_unet.cli",
        "napari_tiled_unet.io",
        "napari_tiled_unet.data",
        "napari_tiled_unet._sample_data",
        "napari_tiled_unet.metrics",
        "napari_tiled_unet.postprocess",
        "napari_tiled_unet.batch",
        "napari_tiled_unet.lazy",
        "napari_tiled_unet.train.trainer",
        "napari_tiled_unet.train.cli",
        "napari_tiled_unet.outputs",
        "napari_tiled_unet.models",
        "napari_tiled_unet.demo",
        "napari_tiled_unet._widgets._batch_run",
        "napari_tiled_unet._widgets._train_run",
        "napari_tiled_unet._widgets._train_thread",
        "napari_tiled_unet._widgets._thread",
        "napari_tiled_unet._widgets._model_picker",
        "napari_tiled_unet.bioimageio",
        "napari_tiled_unet.model.zoo",
        "napari_tiled_unet.model.zoo_import",
        "napari_tiled_unet.model.receptive",
        "napari_tiled_unet.model.stock",
        "napari_tiled_unet._export_cli",
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
