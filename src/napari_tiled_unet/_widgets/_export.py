"""The "Export..." button of the Segment and Train widgets: a model as a bioimage.io package.

Wiring only: one dialog asks for the package file, the authors, the licence and the tags
(remembered for the next export, so they are asked for once); the export itself,
:func:`napari_tiled_unet.batch.bioimageio.export_bioimageio`, runs in a plain Python thread (it
loads TensorFlow) and the result comes back as a status line and a notification.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, PushButton, request_values
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info

from napari_tiled_unet._widgets._layers import notify_error
from napari_tiled_unet._widgets._workers import in_python_thread
from napari_tiled_unet.batch import settings as _settings

__all__ = ["EXPORT_DEFAULTS", "ModelExport", "ask_export_options", "export_settings_path"]

#: What the export dialog remembers ("" = the exporter's default).
EXPORT_DEFAULTS: dict[str, Any] = {"authors": "", "license": "CC-BY-4.0", "tags": ""}


def export_settings_path() -> Path:
    """Return the file that remembers the export dialog's authors, licence and tags."""
    return _settings.settings_path().with_name("export.json")


def ask_export_options(model: Path, remembered: dict[str, Any]) -> dict[str, Any] | None:
    """Ask where to write the package and who made it; None if the dialog is cancelled."""
    return request_values(
        title=f"Export {model.name} for bioimage.io",
        output={
            "annotation": Path,
            "value": model.with_suffix(".zip"),
            "label": "Package (.zip)",
            "options": {"mode": "w", "filter": "bioimage.io packages (*.zip)"},
        },
        authors={"annotation": str, "value": remembered["authors"], "label": "Authors (a, b)"},
        license={"annotation": str, "value": remembered["license"], "label": "Licence (SPDX)"},
        tags={"annotation": str, "value": remembered["tags"], "label": "Extra tags (a, b)"},
    )


def _split(text: str) -> list[str] | None:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    return items or None


def _steps(model: Path, target: Path, options: dict[str, Any]) -> Generator[Any, None, Any]:
    from napari_tiled_unet.batch.bioimageio import default_tags, export_bioimageio, summary_line
    from napari_tiled_unet.batch.models import read_model_metadata

    yield "exporting"
    extra = options.pop("tags")
    if extra:
        meta = read_model_metadata(model)
        options["tags"] = (default_tags(meta) if meta is not None else []) + extra
    path = export_bioimageio(model, target, **options)
    return path, summary_line(path)


class ModelExport:
    """Export one model at a time; report through ``status`` and a notification.

    Parameters
    ----------
    status : callable
        Shows a line in the widget's status label.
    """

    def __init__(self, status: Callable[[str], None]) -> None:
        self._status = status
        self.worker: Any = None

    def add_button(self, form: Container, model: Callable[[], Any], *, before: Any) -> Any:
        """Insert an "Export..." button into ``form`` before ``before``; return it."""
        button = PushButton(text="Export...", tooltip="Save the model as a bioimage.io package.")
        form.insert(list(form).index(before), button)
        button.clicked.connect(lambda _=None: self.start(model()))
        return button

    def start(self, model: Any) -> None:
        """Ask for the options and export ``model`` (a model file path) in the background."""
        if self.worker is not None:
            return
        if not model or not Path(model).exists():
            self._status(notify_error("no model to export; choose or train one first"))
            return
        model = Path(model)
        path = export_settings_path()
        remembered = _settings.load_settings(path, EXPORT_DEFAULTS)
        values = ask_export_options(model, remembered)
        if values is None:
            return
        kept = {key: str(values[key]) for key in EXPORT_DEFAULTS}
        _settings.save_settings(kept, path, EXPORT_DEFAULTS)
        target = Path(values["output"])
        target = target if target.suffix.lower() == ".zip" else target.with_suffix(".zip")
        options = {
            "authors": _split(kept["authors"]),
            "license": kept["license"].strip() or EXPORT_DEFAULTS["license"],
            "tags": _split(kept["tags"]),
        }
        self._status(f"Exporting {model.name} to {target.name}...")
        stop = threading.Event()
        self.worker = create_worker(
            in_python_thread,
            lambda: _steps(model, target, options),
            stop,
            _start_thread=False,
            _connect={
                "returned": self._done,
                "errored": lambda exc: self._status(notify_error(exc)),
                "finished": self._finished,
            },
        )
        self.worker.start()

    def _done(self, result: tuple[Path, str]) -> None:
        path, summary = result
        message = f"Exported {path.name}; {summary}."
        self._status(message)
        show_info(message)

    def _finished(self) -> None:
        self.worker = None
