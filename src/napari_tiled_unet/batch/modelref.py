"""Model files named by path and hash, loaded once per process (for Dask workers)."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_tiled_unet.core.prepare import resolve_model

__all__ = ["LOADS", "ModelRef", "file_sha256", "get_model", "remember"]

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()
#: How many times this process loaded a model from a :class:`ModelRef` (for tests).
LOADS = [0]


@dataclass(frozen=True)
class ModelRef:
    """A model file named by path and content hash; tasks load it once per process.

    Attributes
    ----------
    path : str
        The ``.keras`` / ``.h5`` file (it must be readable where the tasks run).
    sha256 : str
        Hex digest of the file; a different file under the same name is refused.
    """

    path: str
    sha256: str

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> ModelRef:
        """Make a reference to ``path`` with its current content hash."""
        return cls(str(Path(path).resolve()), file_sha256(path))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks.

    A folder (a bioimage.io package unpacked) hashes the names and contents of its files.
    """
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
    return digest.hexdigest()


def get_model(model: Any) -> Any:
    """Return the :class:`UNetModel` for ``model`` (a :class:`ModelRef`: once per process)."""
    if not isinstance(model, ModelRef):
        return resolve_model(model)
    with _MODELS_LOCK:
        if model.sha256 not in _MODELS:
            if file_sha256(model.path) != model.sha256:
                raise ValueError(f"{model.path} changed since the run started; rerun")
            _MODELS[model.sha256] = resolve_model(model.path)
            LOADS[0] += 1
        return _MODELS[model.sha256]


def remember(ref: ModelRef, unet: Any) -> None:
    """Use the already loaded ``unet`` for ``ref`` in this process (no second load)."""
    with _MODELS_LOCK:
        _MODELS.setdefault(ref.sha256, unet)
