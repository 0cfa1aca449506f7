"""The **Train** dock widget: train a U-Net on labels painted in napari, watch it learn.

Wiring only: the form is :class:`~napari_tiled_unet._widgets._train_form.TrainForm`, the
checks are in :mod:`~napari_tiled_unet._widgets._train_run`, a run is a
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

import numpy as np
from napari.layers import Image, Labels, Shapes
from napari.qt.threading import create_worker

from napari_tiled_unet._widgets._export import ModelExport
from napari_tiled_unet._widgets._layers import OUTPUT_IMAGE_ROLES, ROLE, notify_error
from napari_tiled_unet._widgets._model_picker import ModelPickerMixin
from napari_tiled_unet._widgets._train_form import TrainForm
from napari_tiled_unet._widgets._train_live import TrainCallbacks, TrainingRun
from napari_tiled_unet._widgets._train_text import parse_learning_rate
from napari_tiled_unet._widgets._train_weights import show_weight_map
from napari_tiled_unet._widgets._workers import TrainJob, train_steps
from napari_tiled_unet.batch import models as model_files
from napari_tiled_unet.batch import settings as _settings
from napari_tiled_unet.batch.models import model_target
from napari_tiled_unet.core.train.planes import Pair, training_planes, weight_map_planes

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget"]


def _data(layer: Any) -> Any:
    """Full-resolution data of a layer (level 0 of a multiscale pyramid)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _ignore_mask(layer: Any, labels: Any) -> Any:
    """Return the "not annotated" mask: a Labels layer's painted pixels, or shapes' insides.

    Shapes are drawn in the same data coordinates as the labels; shapes drawn in 2D on a
    stack mark the same region in every plane.
    """
    if layer is None:
        return None
    if not isinstance(layer, Shapes):
        return _data(layer)
    same_place = np.allclose(layer.scale[-2:], labels.scale[-2:]) and np.allclose(
        layer.translate[-2:], labels.translate[-2:]
    )
    if not same_place:
        raise ValueError(
            f"the shapes {layer.name!r} are not placed like the labels {labels.name!r} (other "
            "scale or position); draw them in a Shapes layer with the image's scale"
        )
    shape = _data(labels).shape
    if layer.ndim == len(shape):
        return layer.to_labels(labels_shape=shape) != 0
    if layer.ndim == 2:
        return np.broadcast_to(layer.to_labels(labels_shape=shape[-2:]) != 0, shape)
    raise ValueError(
        f"the shapes {layer.name!r} have {layer.ndim} dimensions but the labels "
        f"{labels.name!r} have {len(shape)}; draw them on the same image"
    )


def _pair_name(image: Any, labels: Any, ignore: Any = None) -> str:
    return f"{image.name} + {labels.name}" + ("" if ignore is None else f" - {ignore.name}")


def _pair(image: Any, labels: Any, ignore: Any = None) -> Pair:
    return Pair(
        image.name,
        _data(image),
        labels.name,
        _data(labels),
        bool(image.rgb),
        _ignore_mask(ignore, labels),
        "" if ignore is None else ignore.name,
    )


class TrainWidget(ModelPickerMixin, TrainForm):
    """Train a U-Net on image / labels layers, with live progress, and save it as a model.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are trained on (napari passes it in).
    """

    _defaults = _settings.TRAIN_DEFAULTS

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._pairs: list[tuple[Any, Any, Any]] = []  # image, labels, not annotated (or None)
        self._extra_models: list[Path] = []
        self._run: TrainingRun | None = None
        self._map_worker: Any = None
        self._saving = False
        self._trained: Path | None = None  # the model file the last run saved
        super().__init__()
        self._export = ModelExport(self._set_status)
        self.export_button = self._export.add_button(
            self, lambda: self._trained, before=self.defaults_button
        )
        self.export_button.enabled = False  # until a run has saved a model
        self._connect()
        self._start_settings()

    def _settings_path(self) -> Path:
        return _settings.train_settings_path()

    def _connect(self) -> None:
        self.add_pair.clicked.connect(self.add_current_pair)
        self.remove_pair.clicked.connect(self._on_remove_pairs)
        for visibility in (self.start, self.val_image):
            visibility.changed.connect(self._on_option_changed)
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_file)
        for target in (self.model_name, self.overwrite):
            target.changed.connect(self._update_target)
        persistent = (self.classes, self.depth, self.base_filters, self.steps, self.epochs)
        for option in (*persistent, self.learning_rate, self.optimizer, self.w0, self.sigma):
            option.changed.connect(self._save)
        self.model_name.changed.connect(self._save)
        self.train_button.clicked.connect(self.train)
        self.cancel_button.clicked.connect(self.cancel)
        self.weight_map_button.clicked.connect(self.show_weight_map)
        self.defaults_button.clicked.connect(self.restore_defaults)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self._on_layers_changed)

    # ------------------------------------------------------------------ choices
    def _image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.metadata.get(ROLE) not in OUTPUT_IMAGE_ROLES
        ]

    def _val_image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [("none", None), *self._image_choices()]

    def _labels_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels)]

    def _ignore_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        layers = self._viewer.layers
        return [("none", None), *((x.name, x) for x in layers if isinstance(x, Labels | Shapes))]

    def _pair_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [(_pair_name(*pair), pair) for pair in self._pairs]

    def _on_layers_changed(self, _: Any = None) -> None:
        layers = self._viewer.layers
        self._pairs = [pair for pair in self._pairs if all(x is None or x in layers for x in pair)]
        widgets = (self.image, self.labels_layer, self.ignore_layer, self.val_image)
        for widget in (*widgets, self.val_labels, self.val_ignore, self.pairs):
            widget.reset_choices()
        self._update_pairs_info()

    def _after_models_changed(self) -> None:
        self._update_target()  # the model's name may be taken now

    # ------------------------------------------------------------------ pairs
    def add_current_pair(self) -> None:
        """Add the chosen Image, Labels and Not annotated to the pairs, if they fit together."""
        image, labels, ignore = self.image.value, self.labels_layer.value, self.ignore_layer.value
        try:
            if image is None or labels is None:
                raise ValueError("choose an image and the Labels layer painted on it first")
            if ignore is labels:
                raise ValueError("the labels cannot mark what is not annotated as well")
            training_planes([_pair(image, labels, ignore)])
        except ValueError as exc:
            self.status.value = notify_error(exc)
            return
        new = (image, labels, ignore)
        if not any(all(a is b for a, b in zip(pair, new)) for pair in self._pairs):
            self._pairs.append(new)
        self.pairs.reset_choices()
        self._update_pairs_info()

    def _on_remove_pairs(self, _: Any = None) -> None:
        chosen = self.pairs.value
        self._pairs = [pair for pair in self._pairs if pair not in chosen]
        self.pairs.reset_choices()
        self._update_pairs_info()

    def _update_pairs_info(self) -> None:
        self.update_visibility()
        count = len(self._pairs)
        self.pairs_info.value = (
            f"Trains on {count} pair{'s' if count != 1 else ''}."
            if count
            else "No pairs added: Train uses the Image and Labels above."
        )

    # ------------------------------------------------------------------ settings
    def _after_restore(self) -> None:
        self._update_target()
        self._update_pairs_info()

    def _on_option_changed(self, _: Any = None) -> None:
        self.update_visibility()
        self._save()

    def _on_model_changed(self, _: Any = None) -> None:
        path = self.model.value
        self.model_info.value = (
            model_files.describe_model(path)
            if path
            else f"Choose a model file, or save models in {model_files.models_folder()}."
        )
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
        if self._run is not None:
            return
        try:
            job = self._prepare()
        except (ValueError, TypeError, OSError) as exc:
            self.status.value = notify_error(exc)
            return
        self.train_button.enabled, self.cancel_button.enabled = False, True
        self.plot.start(job.total_steps, job.settings["steps_per_epoch"])
        callbacks = TrainCallbacks(
            event=self.plot.add,
            status=self._set_status,
            failed=lambda exc: self._report(exc, "training"),
            ended=self._on_ended,
        )
        self._run = TrainingRun(job, callbacks, worker_function=train_steps)
        self._run.start()

    def _prepare(self) -> TrainJob:
        pairs = self._pairs or [
            (self.image.value, self.labels_layer.value, self.ignore_layer.value)
        ]
        if any(layer is None for pair in pairs for layer in pair[:2]):
            raise ValueError(
                "there is nothing to train on; choose an image and the Labels layer painted "
                "on it, or add pairs"
            )
        images, labels, ignore = training_planes([_pair(*pair) for pair in pairs])
        val_images: list[Any] = []
        val_labels: list[Any] = []
        val_ignore: list[Any] = []
        if self.val_image.value is not None:
            if self.val_labels.value is None:
                raise ValueError(
                    "the validation image has no labels; choose the Labels layer painted on "
                    "it, or set Validation image to none"
                )
            val_pair = _pair(self.val_image.value, self.val_labels.value, self.val_ignore.value)
            val_images, val_labels, val_ignore = training_planes([val_pair], role="validation")
        settings = {
            "steps_per_epoch": int(self.steps.value),
            "epochs": int(self.epochs.value),
            "learning_rate": parse_learning_rate(self.learning_rate.value),
            "optimizer": self.optimizer.value,
            "w0": float(self.w0.value),
            "sigma": float(self.sigma.value),
        }
        init = self._init_model()
        if init is None:
            settings["num_classes"] = int(self.classes.value)
            settings["depth"] = int(self.depth.value)
            settings["base_filters"] = int(self.base_filters.value)
        target = model_target(self.model_name.value, overwrite=self.overwrite.value)
        return TrainJob(
            images, labels, target, settings, val_images, val_labels, init, ignore, val_ignore
        )

    def _init_model(self) -> Path | None:
        """Return the model file to fine-tune, or None for a new model."""
        if self.start.value == "new":
            return None
        if not self.model.value:
            raise ValueError(
                "no model to fine-tune; choose one under Model or a file under 'or file'"
            )
        path = Path(self.model.value)
        if not path.is_file():
            raise FileNotFoundError(f"the model file {path} does not exist; choose another")
        return path

    @property
    def worker(self) -> Any:
        """The worker thread of the training run in progress, or None."""
        return None if self._run is None else self._run.worker

    def cancel(self) -> None:
        """Stop after the step in progress; the model file keeps the best epoch so far."""
        if self._run is not None:
            self.cancel_button.enabled = False
            self._run.cancel()

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _report(self, exc: BaseException, what: str) -> None:
        """Say what went wrong in one sentence (a notification and the status line)."""
        if isinstance(exc, (ValueError, TypeError, OSError, ImportError)):
            self.status.value = notify_error(exc)
        else:
            self.status.value = notify_error(f"{what} failed ({type(exc).__name__}: {exc})")

    def _on_ended(self) -> None:
        target = self._run.job.target if self._run is not None else None
        self._run = None
        self.train_button.enabled, self.cancel_button.enabled = True, False
        if target is not None and Path(target).is_file():
            self._trained = Path(target)
            self.export_button.enabled = True

    # ------------------------------------------------------------------ weight map
    def show_weight_map(self) -> None:
        """Compute the loss weight map of the chosen labels and show it as an image layer."""
        layer = self.labels_layer.value
        if layer is None:
            self.status.value = notify_error("there are no labels to weigh; choose a Labels layer")
            return
        if self._map_worker is not None:
            return
        try:
            ignore = None if self.ignore_layer.value is layer else self.ignore_layer.value
            mask = _ignore_mask(ignore, layer)
        except ValueError as exc:
            self.status.value = notify_error(exc)
            return
        self.weight_map_button.enabled = False
        self._map_worker = create_worker(
            weight_map_planes,
            _data(layer),
            ignore=mask,
            n_classes=self._weight_classes(),
            w0=float(self.w0.value),
            sigma=float(self.sigma.value),
            name=layer.name,
            _start_thread=False,
            _connect={
                "returned": lambda weights: self._show_weight_map(layer, weights),
                "errored": lambda exc: self._report(exc, "the weight map"),
                "finished": self._on_weight_map_finished,
            },
        )
        self._map_worker.start()

    def _weight_classes(self) -> int:
        """Classes of the targets: the fine-tuned model's, or the Classes field's."""
        if self.start.value == "fine-tune" and self.model.value:
            meta = model_files.read_model_metadata(self.model.value)
            if meta is not None:
                return int(meta.num_classes)
        return int(self.classes.value)

    def _show_weight_map(self, labels: Any, weights: Any) -> None:
        show_weight_map(self._viewer, labels, weights)
        self.status.value = f"Weight map of {labels.name}: weights up to {weights.max():.3g}."

    def _on_weight_map_finished(self) -> None:
        self._map_worker = None
        self.weight_map_button.enabled = True
