"""The **Train** dock widget: train a U-Net on labels painted in napari, watch it learn.

Wiring only: the form is :class:`~napari_tiled_unet._widgets._train_form.TrainForm`, the
shared model / settings / run wiring is :class:`~napari_tiled_unet._widgets._dock.DockWidget`,
layers become training data in :mod:`~napari_tiled_unet._widgets._train_pairs`, a run is a
:class:`~napari_tiled_unet._widgets._train_live.TrainingRun` (the trainer,
:func:`napari_tiled_unet.core.train.trainer.iter_train`, runs in its worker) and the weight-map
preview is :mod:`~napari_tiled_unet._widgets._train_weights`.  Layers change on the main
thread only.  The model is saved in the user models folder, and
:func:`napari_tiled_unet.batch.models.notify_models_changed` makes it appear in every open model
list (the Segment widget's) at once.  Importing this module imports napari and magicgui but
not TensorFlow, which loads in the worker on the first Train.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Labels, Shapes

from napari_tiled_unet._widgets._dock import DockWidget
from napari_tiled_unet._widgets._export import ModelExport
from napari_tiled_unet._widgets._train_form import TrainForm
from napari_tiled_unet._widgets._train_live import TrainCallbacks, TrainingRun
from napari_tiled_unet._widgets._train_pairs import PairList, training_data
from napari_tiled_unet._widgets._train_text import parse_learning_rate
from napari_tiled_unet._widgets._train_weights import WeightMapPreview
from napari_tiled_unet._widgets._workers import TrainJob, train_steps
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.batch.models import model_target

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget"]


class TrainWidget(DockWidget, TrainForm):
    """Train a U-Net on image / labels layers, with live progress, and save it as a model.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are trained on (napari passes it in).
    """

    _defaults = _settings.TRAIN_DEFAULTS
    _settings_name = "train_settings_path"
    _start_button = "train_button"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._init_dock(napari_viewer)
        self._pairs = PairList(self)
        self._trained: Path | None = None  # the model file the last run saved
        super().__init__()
        self._weights = WeightMapPreview(self)
        self._export = ModelExport(self._set_status)
        self.export_button = self._export.add_button(
            self, lambda: self._trained, before=self.defaults_button
        )
        self.export_button.enabled = False  # until a run has saved a model
        self.add_pair.clicked.connect(self.add_current_pair)
        self.remove_pair.clicked.connect(self._pairs.remove_chosen)
        for visibility in (self.start, self.val_image):
            visibility.changed.connect(self._on_option_changed)
        for target in (self.model_name, self.overwrite):
            target.changed.connect(self._update_target)
        persistent = (self.classes, self.depth, self.base_filters, self.steps, self.epochs)
        for option in (*persistent, self.learning_rate, self.optimizer, self.w0, self.sigma):
            option.changed.connect(self._save)
        self.model_name.changed.connect(self._save)
        self.weight_map_button.clicked.connect(self.show_weight_map)
        self._follow_layers(self._on_layers_changed, renamed=True)
        self._start_dock()

    # ------------------------------------------------------------------ choices
    def _val_image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [("none", None), *self._image_choices()]

    def _labels_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels)]

    def _ignore_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        layers = self._viewer.layers
        return [("none", None), *((x.name, x) for x in layers if isinstance(x, Labels | Shapes))]

    def _pair_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return self._pairs.choices()

    def _on_layers_changed(self, _: Any = None) -> None:
        self._pairs.keep_only(self._viewer.layers)
        widgets = (self.image, self.labels_layer, self.ignore_layer, self.val_image)
        for widget in (*widgets, self.val_labels, self.val_ignore, self.pairs):
            widget.reset_choices()
        self._pairs.show_count()

    def _after_models_changed(self) -> None:
        self._update_target()  # the model's name may be taken now

    # ------------------------------------------------------------------ pairs
    def add_current_pair(self) -> None:
        """Add the chosen Image, Labels and Not annotated to the pairs, if they fit together."""
        self._pairs.add_current()

    # ------------------------------------------------------------------ settings
    def _after_restore(self) -> None:
        self._update_target()
        self._pairs.show_count()

    def _on_option_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._save()

    def _update_target(self, _: Any = None) -> None:
        try:
            path = model_target(self.model_name.value, overwrite=self.overwrite.value)
        except ValueError as exc:
            self.target_info.value = f"\u26a0 {exc}"
        else:
            replaced = ", replacing the existing file" if path.exists() else ""
            self.target_info.value = f"Saved as {path.name}{replaced}."
            self.target_info.tooltip = str(path)

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        """Check the inputs and start training in a worker thread.

        A mistake (no data, shapes that differ, labels that are not whole numbers, no name)
        is shown as a napari notification and nothing else happens.
        """
        self.run()

    def _start(self) -> None:
        job = self._prepare()
        self._set_running(True)
        self.plot.start(job.total_steps, job.settings["steps_per_epoch"])
        callbacks = TrainCallbacks(
            event=self.plot.add,
            status=self._set_status,
            failed=lambda exc: self._report(exc, "training"),
            ended=self._on_ended,
        )
        self._active = TrainingRun(job, callbacks, worker_function=train_steps)
        self._active.start()

    def _prepare(self) -> TrainJob:
        pairs = self._pairs.items or [
            (self.image.value, self.labels_layer.value, self.ignore_layer.value)
        ]
        val = (self.val_image.value, self.val_labels.value, self.val_ignore.value)
        (images, labels, ignore), (val_images, val_labels, val_ignore) = training_data(pairs, val)
        settings = {
            "steps_per_epoch": int(self.steps.value),
            "epochs": int(self.epochs.value),
            "learning_rate": parse_learning_rate(self.learning_rate.value),
            "optimizer": self.optimizer.value,
            "w0": float(self.w0.value),
            "sigma": float(self.sigma.value),
        }
        init = None if self.start.value == "new" else self._model_path(_NO_INIT)
        if init is None:
            settings["num_classes"] = int(self.classes.value)
            settings["depth"] = int(self.depth.value)
            settings["base_filters"] = int(self.base_filters.value)
        target = model_target(self.model_name.value, overwrite=self.overwrite.value)
        return TrainJob(
            images, labels, target, settings, val_images, val_labels, init, ignore, val_ignore
        )

    def _on_ended(self) -> None:
        target = self._active.job.target if self._active is not None else None
        self._run_ended()
        if target is not None and Path(target).is_file():
            self._trained = Path(target)
            self.export_button.enabled = True

    # ------------------------------------------------------------------ weight map
    def show_weight_map(self) -> None:
        """Compute the loss weight map of the chosen labels and show it as an image layer."""
        self._weights.start()

    def _weight_classes(self) -> int:
        """Classes of the targets: the fine-tuned model's, or the Classes field's."""
        meta = self._chosen_metadata() if self.start.value == "fine-tune" else None
        return int(self.classes.value if meta is None else meta.num_classes)


_NO_INIT = "no model to fine-tune; choose one under Model or a file under 'or file'"
