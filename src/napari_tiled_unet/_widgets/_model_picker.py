"""What the Segment, Batch and Train widgets share: the model list and remembered settings.

:class:`ModelPickerMixin` goes before the widget's form in the class bases.  The form
provides ``model`` (a combo box listing the models), ``model_file`` (a file picker, "or
file") and ``model_info``; the widget provides ``_defaults`` (its settings and their default
values), ``_settings_path`` (the settings file) and ``_on_model_changed``.  No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from napari_tiled_unet.batch import models as model_files
from napari_tiled_unet.batch import settings as _settings

__all__ = ["ModelPickerMixin"]


class ModelPickerMixin:
    """Model choices (bundled, models folder, picked files) and settings kept between runs."""

    _defaults: ClassVar[dict[str, Any]]
    model: Any
    model_file: Any
    _extra_models: list[Path]
    _saving: bool

    if TYPE_CHECKING:  # provided by the widget or its form, which come later in the MRO

        def _on_model_changed(self, _: Any = None) -> None: ...
        def set_persistent_values(self, values: dict[str, Any]) -> None: ...
        def persistent_values(self) -> dict[str, Any]: ...

    def _settings_path(self) -> Path:
        """Return the file that keeps this widget's settings."""
        raise NotImplementedError

    # ------------------------------------------------------------------ life cycle
    def _start_settings(self) -> None:
        """Show the stored settings and follow the models folder (call at the end of __init__)."""
        self._restore(_settings.load_settings(self._settings_path(), self._defaults))
        model_files.connect_models_changed(self._on_models_changed)

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
