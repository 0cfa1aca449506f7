"""Where models are found: the bundled default and the user's models folder.

Pure standard library plus the metadata reader of :mod:`napari_tiled_unet.core.model`; nothing
here imports TensorFlow, Qt or napari, so the widget can list and describe models (and plan
tiles for them) before the network is loaded.

Whoever writes a model into the models folder calls :func:`notify_models_changed`; widgets
that list models subscribe with :func:`connect_models_changed` and re-read the folder, so a
freshly trained model shows up in every open model list at once.
"""

from __future__ import annotations

import functools
import os
import re
import types
import weakref
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from napari_tiled_unet.core.model.files import ModelMetadata

__all__ = [
    "model_target",
    "BUNDLED_MODELS_DIR",
    "MODELS_ENV_VAR",
    "MODEL_SUFFIXES",
    "ModelChoice",
    "bundled_models",
    "connect_models_changed",
    "describe_metadata",
    "describe_model",
    "find_models",
    "model_choices",
    "models_folder",
    "notify_models_changed",
    "read_model_metadata",
]

#: Environment variable that overrides the user models folder.
MODELS_ENV_VAR = "NAPARI_TILED_UNET_MODELS"
#: File endings recognised as model files (``.zip``: bioimage.io packages).
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".zip")
#: Where trained models shipped inside the package live.
BUNDLED_MODELS_DIR = Path(__file__).resolve().parents[1] / "data" / "models"

# Characters that are unsafe in a file name on some system, and path separators.
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


@dataclass(frozen=True)
class ModelChoice:
    """A model file offered to the user.

    Attributes
    ----------
    name : str
        What a model list shows, e.g. ``"nuclei.keras"`` or ``"nuclei (bundled)"``.
    path : pathlib.Path
        The file.
    origin : {"bundled", "folder", "file"}
        Shipped with the package, found in the models folder, or chosen by the user.
    """

    name: str
    path: Path
    origin: Literal["bundled", "folder", "file"]


def models_folder() -> Path:
    """Return the user models folder (it need not exist).

    ``$NAPARI_TILED_UNET_MODELS`` when set, otherwise ``models`` in the user data folder
    of ``napari-tiled-unet`` (e.g. ``~/.local/share/napari-tiled-unet/models`` on Linux).

    Returns
    -------
    pathlib.Path
    """
    override = os.environ.get(MODELS_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-tiled-unet", appauthor=False)) / "models"


def _model_files(folder: Path) -> list[Path]:
    """Model files directly inside ``folder``, sorted by name; hidden files are skipped."""
    if not folder.is_dir():
        return []
    from napari_tiled_unet.core.model.zoo import is_bioimageio_source

    files = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in MODEL_SUFFIXES
        and not p.name.startswith(".")
        and (p.suffix.lower() != ".zip" or _safe(is_bioimageio_source, p))
    ]
    return sorted(files, key=lambda p: p.name.lower())


def _safe(check: Callable[[Path], bool], path: Path) -> bool:
    try:
        return check(path)
    except (OSError, zipfile.BadZipFile):
        return False


def bundled_models() -> list[Path]:
    """Return the model files shipped inside the package (the bundled nuclei model)."""
    return _model_files(BUNDLED_MODELS_DIR)


def find_models(folder: str | os.PathLike[str] | None = None) -> list[ModelChoice]:
    """List the bundled models first, then the model files in the models folder.

    Parameters
    ----------
    folder : path-like, optional
        Folder to search instead of :func:`models_folder`.  Only files directly inside it
        count (``.keras``, ``.h5``, ``.hdf5``, and bioimage.io packages ``.zip``); names
        starting with a dot are skipped, which also hides the temporary files of a model
        being saved.

    Returns
    -------
    list of ModelChoice
    """
    found = [ModelChoice(f"{p.stem} (bundled)", p, "bundled") for p in bundled_models()]
    search = models_folder() if folder is None else Path(folder)
    found += [ModelChoice(p.name, p, "folder") for p in _model_files(search)]
    return found


def model_choices(extra: list[Path] | None = None) -> list[tuple[str, str]]:
    """Name and path of every model to offer: :func:`find_models`, then ``extra`` files.

    Names are unique (a duplicate gets its folder appended), as a list of choices needs.
    """
    found = find_models()
    seen = {choice.path.resolve() for choice in found}
    for path in extra or []:
        if path.resolve() not in seen:
            found.append(ModelChoice(path.name, path, "file"))
            seen.add(path.resolve())
    names: list[tuple[str, str]] = []
    for choice in found:
        name = choice.name
        if any(name == other for other, _ in names):
            name = f"{name} ({choice.path.parent})"
        names.append((name, str(choice.path)))
    return names


def read_model_metadata(path: str | os.PathLike[str]) -> ModelMetadata | None:
    """Read the metadata a model file carries, without loading the network.

    Returns None for files that have none (legacy ``.h5``, plain Keras files, packages
    from elsewhere) and for files that cannot be read at all;
    :func:`napari_tiled_unet.load_model` reports those properly.
    """
    from napari_tiled_unet.core.model.inspect import read_metadata, read_package_metadata

    path = Path(path)
    try:
        if path.suffix.lower() == ".zip":
            return read_package_metadata(path)
        return read_metadata(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None


def describe_model(path: str | os.PathLike[str]) -> str:
    """Describe a model file in one line for a user, from its metadata only.

    Examples: ``"1 channel -> 2 classes (background, foreground), depth 4"``, or
    ``"no metadata: details after loading"``.
    """
    path = Path(path)
    if not path.is_file():
        return "file not found"
    meta = read_model_metadata(path)
    if meta is None and path.suffix.lower() == ".zip":
        return "bioimage.io package: details after loading"
    if meta is None:
        return "no metadata: details after loading"
    return describe_metadata(meta)


def describe_metadata(meta: ModelMetadata) -> str:
    """One line about a model's channels, classes and depth."""
    channels = f"{meta.input_channels} channel{'s' if meta.input_channels != 1 else ''}"
    classes = ", ".join(meta.class_names)
    return f"{channels} -> {meta.num_classes} classes ({classes}), depth {meta.depth}"


# Listeners of notify_models_changed: bound methods held weakly (a closed widget is forgotten
# with its object), anything else strongly.
_listeners: list[Callable[[], Callable[[], None] | None]] = []


def connect_models_changed(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever :func:`notify_models_changed` is called.

    Parameters
    ----------
    callback : callable
        Called without arguments, on the thread that notifies (the GUI's main thread).  A
        bound method is held by a weak reference, so subscribing does not keep a widget
        alive; other callables are held until the end of the session.
    """
    if isinstance(callback, types.MethodType):
        _listeners.append(weakref.WeakMethod(callback))
    else:
        _listeners.append(functools.partial(_strong, callback))


def _strong(callback: Callable[[], None]) -> Callable[[], None]:
    return callback


def notify_models_changed() -> None:
    """Tell every listener that a model file was written to (or removed from) a models folder.

    Call it from the GUI's main thread: listeners update their model lists.
    """
    for ref in list(_listeners):
        callback = ref()
        if callback is None:
            _listeners.remove(ref)
        else:
            callback()


def model_target(name: str, *, overwrite: bool, folder: Path | None = None) -> Path:
    """Return the file a model called ``name`` is saved as, in the user models folder.

    Raises
    ------
    ValueError
        An empty name, one with characters that do not belong in a file name, or an
        existing file when ``overwrite`` is False.
    """
    stem = name.strip()
    stem = stem[: -len(".keras")] if stem.lower().endswith(".keras") else stem
    if not stem:
        raise ValueError("the model has no name; type one under Name")
    if _UNSAFE.search(stem) or stem.startswith("."):
        raise ValueError(
            f"the name {stem!r} does not work as a file name; use letters, digits, spaces, "
            "'-' and '_'"
        )
    path = (folder or models_folder()) / f"{stem}.keras"
    if path.exists() and not overwrite:
        raise ValueError(
            f"a model called {path.name!r} exists already; choose another name or tick "
            "'replace' next to Name"
        )
    return path
