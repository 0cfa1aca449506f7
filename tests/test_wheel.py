"""End to end: a wheel built from the repository installs into a fresh virtual environment,
and napari there discovers the plugin, loads its sample and docks the Segment widget.

Slow (minutes: it installs TensorFlow, napari and PyQt6, from pip's cache when warm) and
needs the package index; run it with ``pytest -m slow tests/test_wheel.py``.
"""

import os
import subprocess
import sys
import textwrap
import time
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

CHECK = textwrap.dedent(
    """
    import sys
    from npe2 import PluginManager
    pm = PluginManager.instance()
    pm.discover()
    print("manifest", pm.get_manifest("napari-tiled-unet").display_name)
    import napari
    viewer = napari.Viewer(show=False)
    viewer.open_sample("napari-tiled-unet", "nuclei2d")
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    print("widget", type(widget).__name__, widget.image.value.name, widget.axes.value)
    print("heavy", sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    viewer.close()
    import napari_tiled_unet
    print("package", napari_tiled_unet.__file__)
    """
)


def child_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        NAPARI_TILED_UNET_MODELS=str(tmp_path / "models"),
    )
    return env


def check_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        manifest = archive.read("napari_tiled_unet/napari.yaml")  # a file, not a link
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(info).decode()
        metadata = archive.read(info.replace("entry_points.txt", "METADATA")).decode()
    assert manifest == (ROOT / "napari.yaml").read_bytes()
    assert "napari_tiled_unet/data/nuclei2d.tif" in names
    assert "napari_tiled_unet/_widgets/segment.py" in names
    assert "[napari.manifest]\nnapari-tiled-unet = napari_tiled_unet:napari.yaml" in entry_points
    assert "Classifier: Framework :: napari" in metadata


def test_wheel_installs_and_napari_docks_the_widget(tmp_path):
    started = time.perf_counter()
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("napari_tiled_unet-*.whl")
    check_wheel_contents(wheel)
    built = time.perf_counter()

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{wheel}[all]"],
        capture_output=True,
        text=True,
        env=child_env(tmp_path),
        timeout=1800,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    installed = time.perf_counter()

    env = child_env(tmp_path)
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    check = subprocess.run(
        [str(python), "-c", CHECK], capture_output=True, text=True, env=env, timeout=600
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in check.stdout.strip().splitlines())
    assert lines["manifest"] == "napari-tiled-unet"
    assert lines["widget"] == "SegmentWidget nuclei YX"
    assert lines["heavy"] == "[]"
    assert lines["package"].startswith(str(env_dir))  # the wheel, not the repository
    validate = subprocess.run(
        [str(python), "-m", "npe2", "validate", "napari-tiled-unet", "--imports"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    print(
        f"\nwheel built in {built - started:.0f} s, installed in {installed - built:.0f} s, "
        f"checked in {time.perf_counter() - installed:.0f} s"
    )
