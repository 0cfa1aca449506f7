"""What the Segment, Batch and Train docks share: models, settings, run / cancel / status.

:class:`DockWidget` goes before the widget's form in the class bases.  The form provides
``model`` (a combo box listing the models), ``model_file`` (a file picker, "or file"),
``model_info``, ``status``, ``cancel_button``, ``defaults_button`` and the button named by
``_start_button``; the widget provides ``_defaults`` (its settings and their default
values), ``_settings_name`` (which settings file), ``_start`` (check the form and start a
worker) and ``_busy``.  No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow

from napari_tiled_unet._widgets._layers import OUTPUT_IMAGE_ROLES, ROLE, notify_error
from napari_tiled_unet._widgets._workers import ModelLoaded, import_in_background, model_key
from napari_tiled_unet.batch import models as model_files
from napari_tiled_unet.batch import settings as _settings

__all__ = [
    "DockWidget",
    "layer_data",
    "make_worker",
    "tabify_with_siblings",
    "viewer_window",
    "warm_progress_bars",
]

#: The signals of a napari worker that :func:`make_worker` connects.
_SIGNALS = ("yielded", "returned", "errored", "aborted", "finished")

#: The errors a user can fix: shown in one sentence, the form stays as it is.
USER_ERRORS = (ValueError, TypeError, OSError)
#: Qt property that marks the dock widgets holding this plugin's forms.
_DOCK_MARK = "napari_tiled_unet_dock"
#: Whether napari's first progress bar of the session has been made (see
#: :func:`warm_progress_bars`).
_progress_warmed = False
#: Delay (ms) after docking before :func:`warm_progress_bars` runs: after the dock's first
#: paints.
_WARM_DELAY_MS = 300


def warm_progress_bars() -> None:
    """Open and close one napari progress bar, the first time in the session only.

    napari's first progress bar of a session takes 70-90 ms of main thread (its widget
    and the activity indicator are made, shown and painted at once), later ones 10-20 ms.
    A dock pays that while the viewer is idle, just after it opens, instead of in the
    first run.
    """
    global _progress_warmed
    if _progress_warmed:
        return
    _progress_warmed = True
    progress(total=0, desc="napari-tiled-unet: ready").close()


def _dock_of(widget: Any) -> QDockWidget | None:
    """Return the dock widget that holds the Qt ``widget``, or None (not docked yet)."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent if isinstance(parent, QDockWidget) else None


def tabify_with_siblings(widget: Any) -> None:
    """Put the dock of ``widget`` in tabs with the plugin's other docks in the same area.

    Opened one after the other from the Plugins menu, napari stacks docks one under the
    other, and three tall forms then make the window taller than the screen; as tabs, they
    share the height of one.  The new dock comes to the front.
    """
    dock = _dock_of(widget)
    if dock is None or dock.isFloating():
        return
    dock.setProperty(_DOCK_MARK, True)
    window = dock.parentWidget()
    if not isinstance(window, QMainWindow):
        return
    area = window.dockWidgetArea(dock)
    for other in window.findChildren(QDockWidget):
        same_area = window.dockWidgetArea(other) == area and not other.isFloating()
        if other is not dock and other.property(_DOCK_MARK) and other.isVisible() and same_area:
            window.tabifyDockWidget(other, dock)
            dock.show()
            dock.raise_()
            return


def viewer_window(widget: Any) -> Any:
    """Return the main window that holds the Qt ``widget``'s dock, docked or floating."""
    dock = _dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    return window if isinstance(window, QMainWindow) else widget.window()


def layer_data(layer: Any) -> Any:
    """Full-resolution data of a layer (level 0 of a multiscale pyramid)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def make_worker(function: Callable[..., Any], *args: Any, owner: Any, **handlers: Any) -> Any:
    """Return a napari worker for ``function(*args)``, not started yet.

    Each signal is connected to ``owner._on_<signal>`` where it has one, unless
    ``handlers`` names another function for it (``errored=...``).
    """
    for signal in _SIGNALS:
        if signal not in handlers and hasattr(owner, f"_on_{signal}"):
            handlers[signal] = getattr(owner, f"_on_{signal}")
    return create_worker(function, *args, _start_thread=False, _connect=handlers)


class DockWidget:
    """Model choices, settings kept between runs, and the run / cancel / status wiring."""

    _defaults: ClassVar[dict[str, Any]]
    #: Name of the function of :mod:`napari_tiled_unet.batch.settings` giving the file.
    _settings_name: ClassVar[str]
    #: The form's button that starts a run.
    _start_button: ClassVar[str] = "run_button"
    model: Any
    model_file: Any
    model_info: Any
    status: Any
    cancel_button: Any
    defaults_button: Any

    if TYPE_CHECKING:  # provided by the widget or its form, which come later in the MRO

        def set_persistent_values(self, values: dict[str, Any]) -> None: ...
        def persistent_values(self) -> dict[str, Any]: ...

    # ------------------------------------------------------------------ life cycle
    def _init_dock(self, viewer: Any) -> None:
        """Set up the shared state (call first in ``__init__``, before the form's)."""
        self._viewer = viewer
        self._extra_models: list[Path] = []
        self._loaded: tuple[tuple[str, int, int], Any] | None = None
        self._saving = False
        #: The run in progress (its ``worker`` and ``cancel()``), or None.
        self._active: Any = None
        import_in_background()  # what napari would import on the main thread at the first run

    def _start_dock(self) -> None:
        """Wire the shared controls, show the stored settings, follow the models folder.

        Call at the end of ``__init__``, once the form exists.
        """
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_file)
        getattr(self, self._start_button).clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.defaults_button.clicked.connect(self.restore_defaults)
        self._restore(_settings.load_settings(self._settings_path(), self._defaults))
        model_files.connect_models_changed(self._on_models_changed)
        # napari docks the form after making it: tab it with its siblings once docked.
        QTimer.singleShot(0, self._tabify)

    def _tabify(self) -> None:
        try:
            self.keep_labels_whole()  # type: ignore[attr-defined]
            tabify_with_siblings(self.native)  # type: ignore[attr-defined]
        except RuntimeError:  # closed before the event loop came round
            return
        QTimer.singleShot(_WARM_DELAY_MS, warm_progress_bars)

    def _settings_path(self) -> Path:
        """Return the file that keeps this widget's settings."""
        path: Path = getattr(_settings, self._settings_name)()
        return path

    def _follow_layers(self, handler: Callable[..., None], *, renamed: bool = False) -> None:
        """Call ``handler`` whenever the viewer's layers change."""
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(handler)
        if renamed:
            events.renamed.connect(handler)

    def _image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        """Image layers to segment or train on (not the probabilities or weight maps)."""
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.metadata.get(ROLE) not in OUTPUT_IMAGE_ROLES
        ]

    # ------------------------------------------------------------------ models
    def _model_choices(self, _: Any = None) -> list[tuple[str, str]]:
        choices = model_files.model_choices(self._extra_models)
        return choices or [("no model yet: choose a file below", "")]

    def _add_model(self, path: Path) -> None:
        """List a model file picked by hand, and choose it."""
        if path not in self._extra_models:
            self._extra_models.append(path)
        self.model.reset_choices()
        if str(path) in self.model.choices:
            self.model.value = str(path)

    def _on_model_file(self, _: Any = None) -> None:
        value = self.model_file.value
        if isinstance(value, Path) and value.is_file():
            self._add_model(value.resolve())

    def _on_models_changed(self) -> None:
        """List the models again: one was saved in the models folder (e.g. by Train)."""
        try:
            self.model.reset_choices()
            self._after_models_changed()
        except RuntimeError:  # the viewer was closed: its Qt widgets are gone
            return

    def _after_models_changed(self) -> None:
        """Update what else depends on the list of models (a hook; nothing by default)."""

    def _on_model_changed(self, _: Any = None) -> None:
        path = self.model.value
        loaded = self._loaded_for(path) if path else None
        if not path:
            folder = model_files.models_folder()
            self.model_info.value = f"Choose a model file, or save models in {folder}."
        elif loaded is not None:
            self.model_info.value = model_files.describe_metadata(loaded.metadata)
        else:
            self.model_info.value = model_files.describe_model(path)
        self._after_model_changed()
        self._save()

    def _after_model_changed(self) -> None:
        """Update what else depends on the chosen model (a hook; nothing by default)."""

    def _loaded_for(self, path: str | Path) -> Any:
        """Return the model an earlier run loaded from ``path``, if the file is unchanged."""
        try:
            key = model_key(path)
        except OSError:
            return None
        return self._loaded[1] if self._loaded is not None and self._loaded[0] == key else None

    def _keep_loaded(self, message: ModelLoaded) -> None:
        """Keep the model a run loaded, for the next run with the same file."""
        self._loaded = (message.key, message.unet)

    def _chosen_metadata(self) -> Any:
        """Return the chosen model's metadata, from a loaded model or the file (or None)."""
        path = self.model.value
        if not path:
            return None
        loaded = self._loaded_for(path)
        return loaded.metadata if loaded is not None else model_files.read_model_metadata(path)

    def _model_path(self, missing: str | None = None) -> Path:
        """Return the chosen model file; a one-line error when there is none or it is gone."""
        if not self.model.value:
            raise ValueError(
                missing
                or "no model chosen; choose a .keras model file under 'or file', or save "
                f"models in {model_files.models_folder()}"
            )
        path = Path(self.model.value)
        if not path.is_file():
            raise FileNotFoundError(f"the model file {path} does not exist; choose another")
        return path

    # ------------------------------------------------------------------ run, cancel, status
    def run(self, _: Any = None) -> None:
        """Check the choices and start the run in a worker thread.

        A mistake (no input, no model, wrong axes or channels, ...) is shown as a napari
        notification and nothing else happens.
        """
        if self._busy():
            return
        try:
            self._start()
        except USER_ERRORS as exc:
            self.status.value = notify_error(exc)

    def _busy(self) -> bool:
        """Whether a run is in progress."""
        return self._active is not None

    def _start(self) -> None:
        """Check the form and start the run in ``_active`` (raise a user error to refuse)."""
        raise NotImplementedError

    @property
    def worker(self) -> Any:
        """The worker thread of the run in progress, or None."""
        return None if self._active is None else self._active.worker

    def cancel(self) -> None:
        """Stop the run in progress where it can stop cleanly, and say so."""
        if self._active is not None:
            self.cancel_button.enabled = False
            self._active.cancel()

    def _run_ended(self) -> None:
        self._active = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        getattr(self, self._start_button).enabled = not running
        self.cancel_button.enabled = running

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _on_failed(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc)

    def _report(self, exc: BaseException, what: str) -> None:
        """Say what went wrong in one sentence (a notification and the status line)."""
        if isinstance(exc, (*USER_ERRORS, ImportError)):
            self.status.value = notify_error(exc)
        else:
            self.status.value = notify_error(f"{what} failed ({type(exc).__name__}: {exc})")

    # ------------------------------------------------------------------ settings
    def _restore(self, values: dict[str, Any]) -> None:
        """Show stored (or default) values without writing them back."""
        self._saving = False
        try:
            self.set_persistent_values(values)
            if values["model"] and Path(values["model"]).is_file():
                self._add_model(Path(values["model"]))
            self._on_model_changed()
            self._after_restore()
        finally:
            self._saving = True

    def _after_restore(self) -> None:
        """Update what else depends on restored values (a hook; nothing by default)."""

    def _save(self, _: Any = None) -> None:
        if self._saving:
            values = self.persistent_values()
            _settings.save_settings(values, self._settings_path(), self._defaults)

    def restore_defaults(self) -> None:
        """Reset every parameter to its default, and remember the defaults."""
        self._restore(dict(self._defaults))
        self._save()
