"""The README names napari's menus as napari shows them, from the manifest."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def menu_paths(text):
    """Every *File > ...* and *Plugins > ...* path in italics, on one line."""
    flat = " ".join(text.split())
    return re.findall(r"\*((?:File|Plugins) > [^*]+)\*", flat)


def test_readme_menu_names_are_those_of_the_manifest():
    manifest = yaml.safe_load((ROOT / "napari.yaml").read_text())
    plugin = manifest["display_name"]
    samples = {s["display_name"] for s in manifest["contributions"]["sample_data"]}
    widgets = {w["display_name"] for w in manifest["contributions"]["widgets"]}
    paths = menu_paths((ROOT / "README.md").read_text(encoding="utf-8"))
    assert paths, "the README names no menu"
    for path in paths:
        parts = path.split(" > ")
        if parts[0] == "File":
            assert parts[1:3] == ["Open Sample", plugin], path
            assert len(parts) == 4 and parts[3] in samples, path
        else:
            assert len(parts) == 3 and parts[1] == plugin and parts[2] in widgets, path
    kinds = {p.split(" > ")[0] for p in paths}
    assert kinds == {"File", "Plugins"}
