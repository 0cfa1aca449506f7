"""Shared fixtures: tiny randomly initialised U-Nets (fast on two CPU cores).

The whole session writes its settings and models into a temporary folder, never into the
user's own configuration or models folder, even where a test forgets to redirect them.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_SANDBOX = tempfile.mkdtemp(prefix="napari-tiled-unet-tests-")
atexit.register(shutil.rmtree, _SANDBOX, ignore_errors=True)
os.environ["XDG_CONFIG_HOME"] = os.path.join(_SANDBOX, "config")
os.environ["NAPARI_TILED_UNET_MODELS"] = os.path.join(_SANDBOX, "models")
os.environ["NAPARI_TILED_UNET_CACHE"] = os.path.join(_SANDBOX, "cache")


@functools.cache
def tiny_unet(
    depth: int = 2,
    base_filters: int = 4,
    input_channels: int = 1,
    num_classes: int = 2,
    seed: int = 0,
):
    """A small U-Net wrapped as UNetModel, cached across tests (weights never change)."""
    from napari_tiled_unet import build_unet
    from napari_tiled_unet.core.model.files import wrap_keras_model

    keras_model = build_unet(
        depth=depth,
        base_filters=base_filters,
        input_channels=input_channels,
        num_classes=num_classes,
        seed=seed,
    )
    return wrap_keras_model(keras_model)


def cli_help(command: str, heavy: tuple[str, ...] = ("tensorflow", "keras", "numpy")):
    """``napari-tiled-unet COMMAND --help`` in a fresh interpreter: (its output, the
    modules of ``heavy`` that it imported)."""
    import subprocess
    import sys

    code = (
        "import sys; from napari_tiled_unet.cli.main import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text, _, found = out.stdout.rpartition("HEAVY ")
    return text, found.strip()


def lenient_int8_gate(monkeypatch) -> None:
    """Make the int8 gate pass any model: tiny random U-Nets may not meet the real agreement
    bar, and ONNX Runtime runs them slower than TensorFlow's float32."""
    from napari_tiled_unet.core import int8

    monkeypatch.setattr(int8, "MIN_AGREEMENT", 0.0)
    monkeypatch.setattr(int8, "MIN_BORDER_IOU", 0.0)
    monkeypatch.setattr(int8, "MIN_SPEEDUP", 0.0)


@pytest.fixture
def unet2():
    return tiny_unet(2, 4)


@pytest.fixture
def unet3():
    return tiny_unet(3, 4)


@pytest.fixture
def user_folders(monkeypatch, tmp_path):
    """Settings files and models folders of the widgets in ``tmp_path``, nothing bundled.

    Settings: ``settings.json`` (Segment), ``batch.json`` and ``train.json``; user models:
    ``tmp_path / "models"``.
    """
    from napari_tiled_unet.batch import models
    from napari_tiled_unet.batch import settings as _settings

    monkeypatch.setattr(_settings, "settings_path", lambda: tmp_path / "settings.json")
    monkeypatch.setattr(_settings, "batch_settings_path", lambda: tmp_path / "batch.json")
    monkeypatch.setattr(_settings, "train_settings_path", lambda: tmp_path / "train.json")
    monkeypatch.setenv(models.MODELS_ENV_VAR, str(tmp_path / "models"))
    monkeypatch.setattr(models, "BUNDLED_MODELS_DIR", tmp_path / "bundled")


@pytest.fixture
def notes():
    """The (severity, message) of every napari notification shown during the test."""
    from napari.utils.notifications import notification_manager

    seen = []

    def collect(note):
        seen.append((str(note.severity), note.message))

    notification_manager.notification_ready.connect(collect)
    yield seen
    notification_manager.notification_ready.disconnect(collect)
