"""The run record: a JSON file next to the outputs that says how each result was made."""

from __future__ import annotations

import json
import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["RunRecord"]

_FORMAT = "napari-tiled-unet run record"
_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunRecord:
    """Appends this run to ``<outdir>/napari-tiled-unet-run.json`` and keeps it current.

    The file holds every run made into the folder (``{"runs": [...]}``), newest last; each
    run lists its parameters, the model (path, SHA-256, metadata), the software versions and
    one entry per input file.  It is rewritten atomically after every file, so a killed run
    leaves a valid record of the files it finished.

    Parameters
    ----------
    path : Path
        The record file.
    run : dict
        Parameters, model and environment of this run.
    """

    def __init__(self, path: Path, run: dict[str, Any]) -> None:
        self.path = path
        self._runs = self._previous_runs()
        self._run = {
            "started": _now(),
            "finished": None,
            "status": "running",
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "cwd": os.getcwd(),
            **run,
            "files": [],
        }
        self._runs.append(self._run)
        self._save()

    def _previous_runs(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return list(data["runs"]) if data.get("format") == _FORMAT else []
        except (OSError, ValueError, KeyError, TypeError):
            return []  # no record yet, or one we cannot read: start afresh

    def made_with(self, path: Path) -> dict[str, Any] | None:
        """Return model and parameters of the newest earlier run that finished ``path``."""
        target = str(Path(path).resolve())
        for run in reversed(self._runs[:-1]):
            for entry in run.get("files", []):
                if entry.get("status") == "done" and entry.get("input_path") == target:
                    return {"model": run.get("model", {}), "parameters": run.get("parameters", {})}
        return None

    def add_file(self, entry: dict[str, Any]) -> None:
        """Record one input file's outcome."""
        self._run["files"].append(entry)
        self._save()

    def finish(self, status: str) -> None:
        """Close the run with ``status`` ("completed", "failed" or "cancelled")."""
        self._run.update(finished=_now(), status=status)
        self._save()

    def _save(self) -> None:
        text = json.dumps({"format": _FORMAT, "version": _VERSION, "runs": self._runs}, indent=1)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
