"""Where the widget finds models, and what it says about them before loading them."""

from pathlib import Path

import pytest

from napari_tiled_unet.batch import models
from tests.conftest import tiny_unet


@pytest.fixture
def no_bundled(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "BUNDLED_MODELS_DIR", tmp_path / "no-bundled-models")


def test_models_folder_follows_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(models.MODELS_ENV_VAR, str(tmp_path / "mine"))
    assert models.models_folder() == tmp_path / "mine"


def test_models_folder_defaults_to_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(models.MODELS_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    folder = models.models_folder()
    assert folder.parts[-2:] == ("napari-tiled-unet", "models")
    if folder.is_relative_to(tmp_path):  # Linux: platformdirs follows XDG_DATA_HOME
        assert folder == tmp_path / "napari-tiled-unet" / "models"


def test_find_models_lists_model_files_only(tmp_path, no_bundled):
    for name in ("b.keras", "A.h5", "c.HDF5", ".b.tmp123.keras", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.keras").write_bytes(b"x")
    found = models.find_models(tmp_path)
    assert [c.name for c in found] == ["A.h5", "b.keras", "c.HDF5"]
    assert {c.origin for c in found} == {"folder"}
    assert models.find_models(tmp_path / "missing") == []


def test_bundled_models_come_first(monkeypatch, tmp_path):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "nuclei.keras").write_bytes(b"x")
    (tmp_path / "a.keras").write_bytes(b"x")
    monkeypatch.setattr(models, "BUNDLED_MODELS_DIR", bundled)
    monkeypatch.setenv(models.MODELS_ENV_VAR, str(tmp_path))
    found = models.find_models()
    assert [(c.name, c.origin) for c in found] == [
        ("nuclei (bundled)", "bundled"),
        ("a.keras", "folder"),
    ]


def test_model_choices_are_unique_and_include_chosen_files(monkeypatch, tmp_path, no_bundled):
    folder, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    for path in (folder / "unet.keras", elsewhere / "unet.keras", elsewhere / "other.h5"):
        path.write_bytes(b"x")
    monkeypatch.setenv(models.MODELS_ENV_VAR, str(folder))
    extra = [elsewhere / "unet.keras", folder / "unet.keras", elsewhere / "other.h5"]
    choices = models.model_choices(extra)
    assert choices == [
        ("unet.keras", str(folder / "unet.keras")),
        (f"unet.keras ({elsewhere})", str(elsewhere / "unet.keras")),
        ("other.h5", str(elsewhere / "other.h5")),
    ]
    assert models.model_choices() == choices[:1]


def test_metadata_and_description_without_loading(tmp_path):
    from napari_tiled_unet import save_model

    path = save_model(tiny_unet(2, 4, num_classes=3), tmp_path / "three.keras")
    meta = models.read_model_metadata(path)
    assert meta is not None and meta.num_classes == 3 and meta.depth == 2
    assert models.describe_model(path) == (
        "1 channel -> 3 classes (background, interior, border), depth 2"
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("garbage.keras", b"not a zip", "no metadata: details after loading"),
        ("legacy.h5", b"\x89HDF\r\n\x1a\n", "no metadata: details after loading"),
        ("folder.keras", None, "file not found"),
        ("missing.keras", False, "file not found"),
    ],
)
def test_files_without_metadata_are_described_not_raised(tmp_path, name, content, expected):
    path = Path(tmp_path / name)
    if content is None:
        path.mkdir()
    elif content is not False:
        path.write_bytes(content)
    assert models.read_model_metadata(path) is None
    assert models.describe_model(path) == expected
