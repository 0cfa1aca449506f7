"""The run record: a JSON file next to the outputs that says how each result was made.

It also says which input made each output, so that an output is only ever skipped or
replaced on behalf of the input that made it (:meth:`RunRecord.check_outputs`).  A run keeps
the output folder locked (:mod:`napari_tiled_unet.batch.folderlock`) while it writes, and every
save merges this run into what is on disk, so no run's entries are lost.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import uuid
import warnings
from collections.abc import Collection, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["RunRecord", "input_identity", "recorded_outputs"]

_FORMAT = "napari-tiled-unet run record"
_VERSION = 2
#: Entries whose outputs were written by (or, when running, are being written for) an input.
_MADE = ("done", "skipped", "running")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def input_identity(path: Path) -> dict[str, Any]:
    """Return what identifies an input file: its resolved path, size and modification time."""
    stat = Path(path).stat()
    return {
        "input_path": str(Path(path).resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
    }


def _read_runs(path: Path) -> list[dict[str, Any]]:
    """Return the runs in the record at ``path`` ([] if there is none); ValueError if corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from exc
    data = json.loads(text)  # a JSONDecodeError is a ValueError
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError("not a napari-tiled-unet run record")
    runs = data.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ValueError("it has no list of runs")
    return runs


def _keep_aside(path: Path, reason: str) -> None:
    """Rename an unreadable record so that its history is kept, and say so."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.stem}.unreadable-{stamp}-{os.getpid()}{path.suffix}")
    os.replace(path, aside)
    warnings.warn(
        f"the run record {path} could not be read ({reason}); it was kept as {aside.name} "
        "and a new record was started: outputs it listed are no longer skipped",
        UserWarning,
        stacklevel=3,
    )


def recorded_outputs(path: Path) -> set[str]:
    """Names of the outputs that the record at ``path`` says were made (unreadable: none)."""
    try:
        runs = _read_runs(path)
    except ValueError:
        return set()
    return {
        Path(str(name)).name
        for run in runs
        for entry in run.get("files", [])
        if isinstance(entry, dict) and entry.get("status") in _MADE
        for name in entry.get("outputs") or ()
    }


def _moved(entry: dict[str, Any], now: dict[str, Any]) -> bool:
    """Tell whether name, size and time match: the same file, moved to another folder."""
    return (
        Path(str(entry.get("input_path", ""))).name == Path(now["input_path"]).name
        and entry.get("input_size") == now["input_size"]
        and entry.get("input_mtime_ns") == now["input_mtime_ns"]
    )


def _changed(entry: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the recorded size or modification time differs (older records have none)."""
    return any(entry.get(k, now[k]) != now[k] for k in ("input_size", "input_mtime_ns"))


class RunRecord:
    """Appends this run to ``<outdir>/napari-tiled-unet-run.json`` and keeps it current.

    The file holds every run made into the folder (``{"runs": [...]}``), newest last; each
    run lists its parameters, the model (path, SHA-256, metadata), the software versions and
    one entry per input file, with the input's path, size and modification time and the
    outputs made from it.  It is rewritten atomically after every file, so a killed run
    leaves a valid record of the files it finished.  A record that cannot be read is renamed
    (``napari-tiled-unet-run.unreadable-<time>-<pid>.json``) with a warning, not replaced.

    Parameters
    ----------
    path : Path
        The record file.
    run : dict
        Parameters, model and environment of this run.
    """

    def __init__(self, path: Path, run: dict[str, Any]) -> None:
        self.path = path
        self._makers: dict[str, dict[str, Any]] | None = None  # output name -> entry
        self._runs = self._load()
        self._run = {
            "id": uuid.uuid4().hex,
            "started": _now(),
            "finished": None,
            "status": "running",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": platform.python_version(),
            "cwd": os.getcwd(),
            **run,
            "files": [],
        }
        self._runs.append(self._run)
        self._save()

    def _load(self) -> list[dict[str, Any]]:
        try:
            return _read_runs(self.path)
        except ValueError as exc:
            _keep_aside(self.path, str(exc).splitlines()[0][:200] or "damaged")
            return []

    def made_with(self, path: Path) -> dict[str, Any] | None:
        """Return model and parameters of the newest earlier run that made outputs of ``path``."""
        target = str(Path(path).resolve())
        for run in reversed(self._runs):
            if run is self._run:
                continue
            for entry in run.get("files", []):
                made = entry.get("status") in ("done", "running")  # running: killed after
                if made and entry.get("input_path") == target:
                    return {"model": run.get("model", {}), "parameters": run.get("parameters", {})}
        return None

    def maker(self, name: str) -> dict[str, Any] | None:
        """Return the newest entry that says it made the output called ``name``."""
        if self._makers is None:
            self._makers = {}
            for run in self._runs:  # oldest first: newer entries win
                for entry in run.get("files", []):
                    if isinstance(entry, dict) and entry.get("status") in _MADE:
                        for output in entry.get("outputs") or ():
                            self._makers[Path(str(output)).name] = entry
        return self._makers.get(name)

    def check_outputs(
        self,
        path: Path,
        targets: dict[str, Path],
        *,
        overwrite: bool,
        inputs: Collection[Path],
    ) -> tuple[dict[str, Path], str]:
        """Decide which outputs of ``path`` to write; refuse (a one-line reason) when unsafe.

        An existing output is kept (skipped) when this input made it, redone with
        ``overwrite``, and never touched when another input made it, when no record says
        who made it (unless ``overwrite``) or when it is one of this run's ``inputs``
        (resolved paths).

        Returns
        -------
        todo : dict
            The outputs to write.
        problem : str
            Why the file must not be segmented here ("" when it may).
        """
        try:
            now = input_identity(path)
        except OSError as exc:
            return {}, f"cannot read the file ({exc.strerror or exc})"
        todo = {}
        for kind, target in targets.items():
            if target.resolve() in inputs:
                return {}, (
                    f"its output {target.name} would replace an input of this run; segment "
                    "it into another output folder"
                )
            if not target.exists():
                todo[kind] = target
                continue
            problem = self._existing(target, now, overwrite)
            if problem:
                return {}, problem
            if overwrite:
                todo[kind] = target
        return todo, ""

    def _existing(self, target: Path, now: dict[str, Any], overwrite: bool) -> str:
        entry = self.maker(target.name)
        if entry is None:
            if overwrite:
                return ""
            return (
                f"{target.name} exists but no run record says which input made it; move it "
                "away, use overwrite to replace it, or use another output folder"
            )
        made_from = str(entry.get("input_path", ""))
        if made_from != now["input_path"] and not _moved(entry, now):
            return (
                f"{target.name} was made from another file, {made_from}; segment this one "
                "into another output folder (or delete that output to redo it from this file)"
            )
        if _changed(entry, now) and not overwrite:
            return (
                f"{target.name} was made from an earlier version of this file (its size or "
                "modification time changed since); use overwrite to redo it"
            )
        return ""

    def claim(self, path: Path, outputs: Iterable[Path]) -> None:
        """Record that the outputs of ``path`` are being written (replaced by add_file)."""
        entry = {"input": str(path), "status": "running", "outputs": [str(p) for p in outputs]}
        try:
            entry.update(input_identity(path))
        except OSError:
            entry["input_path"] = str(Path(path).resolve())
        self._run["files"].append(entry)
        self._save()

    def add_file(self, entry: dict[str, Any]) -> None:
        """Record one input file's outcome (it replaces the file's claim, if any)."""
        files = self._run["files"]
        if files and files[-1].get("status") == "running" and files[-1]["input"] == entry["input"]:
            files.pop()
        files.append(entry)
        self._save()

    def finish(self, status: str) -> None:
        """Close the run with ``status`` ("completed", "failed" or "cancelled")."""
        self._run.update(finished=_now(), status=status)
        self._save()

    def _save(self) -> None:
        # Merge with what is on disk, so that a run which ignored the folder lock (or an
        # older version of this program) loses no entry either.
        try:
            base = _read_runs(self.path)
        except ValueError as exc:
            _keep_aside(self.path, str(exc).splitlines()[0][:200] or "damaged")
            base = self._runs
        mine = self._run["id"]
        runs = [self._run if run.get("id") == mine else run for run in base]
        if not any(run.get("id") == mine for run in base):
            runs.append(self._run)
        self._runs, self._makers = runs, None
        text = json.dumps({"format": _FORMAT, "version": _VERSION, "runs": runs}, indent=1)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
