"""The npe2 manifest: valid, found by installed copies, and cheap to read (no TensorFlow)."""

import importlib
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def clean_env(tmp_path):
    """Environment for a child process that keeps the user's folders out of the test."""
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        NAPARI_TILED_UNET_MODELS=str(tmp_path / "models"),
    )
    return env


def test_npe2_validate_with_imports():
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-tiled-unet", "--imports"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid!" in out.stdout


def test_installed_manifest_is_the_top_level_file():
    link = ROOT / "src" / "napari_tiled_unet" / "napari.yaml"
    assert link.is_symlink() and link.resolve() == (ROOT / "napari.yaml").resolve()
    found = [ep for ep in entry_points(group="napari.manifest") if ep.name == "napari-tiled-unet"]
    assert [ep.value for ep in found] == ["napari_tiled_unet:napari.yaml"]


def test_contributions_are_module_level_objects():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-tiled-unet")
    assert manifest.display_name == "napari-tiled-unet"
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets or []] == ["Segment", "Batch", "Train"]
    assert [s.key for s in contributions.sample_data or []] == ["nuclei2d"]
    for command in contributions.commands or []:
        module, _, name = command.python_name.partition(":")
        obj = getattr(importlib.import_module(module), name)
        assert callable(obj) and "<locals>" not in obj.__qualname__, command.id


def test_reading_the_manifest_imports_nothing_heavy(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from npe2 import PluginManager
        pm = PluginManager.instance()
        pm.discover()
        manifest = pm.get_manifest("napari-tiled-unet")
        print(manifest.contributions.widgets[0].display_name)
        print(sorted(m for m in ("tensorflow", "keras", "napari_tiled_unet.core.predict")
                     if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(tmp_path),
        timeout=300,
    )
    assert out.stdout.split("\n")[:2] == ["Segment", "[]"]


@pytest.mark.gui
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (Xvfb)")
def test_napari_opens_the_widget_without_importing_tensorflow(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        import napari
        viewer = napari.Viewer(show=False)
        viewer.open_sample("napari-tiled-unet", "nuclei2d")
        _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
        print(type(widget).__name__, widget.image.value.name, widget.axes.value)
        for name in ("Batch", "Train"):
            _, other = viewer.window.add_plugin_dock_widget("napari-tiled-unet", name)
            print(type(other).__name__)
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
        viewer.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().split("\n")[-4:] == [
        "SegmentWidget nuclei YX",
        "BatchWidget",
        "TrainWidget",
        "[]",
    ]
    assert not (tmp_path / "config" / "napari-tiled-unet").exists()  # opening saves nothing


def test_napari_starts_without_a_qt_binding_deprecation_notice(tmp_path):
    """The extras bring napari's recommended binding: no "PyQt5 ... deprecated" at start."""
    script = (
        "import napari, qtpy\n"
        "from napari.utils.notifications import notification_manager\n"
        "from qtpy.QtWidgets import QApplication\n"
        "viewer = napari.Viewer(show=True)\n"
        "QApplication.processEvents()\n"
        "print('binding', qtpy.API_NAME)\n"
        "for record in notification_manager.records:\n"
        "    print('notice', record.message)\n"
        "viewer.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(tmp_path),
    )
    assert "binding PyQt6" in done.stdout, done.stderr[-2000:]
    assert "deprecated" not in done.stdout
