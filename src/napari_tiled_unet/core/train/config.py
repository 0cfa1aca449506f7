"""Training settings (``TrainConfig``) and progress events (``TrainProgress``), pure Python."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from napari_tiled_unet.core.model.geometry import (
    is_valid_input_size,
    output_size,
    smallest_input_for_output,
)
from napari_tiled_unet.core.train.data import WeightOptions

__all__ = ["DEFAULT_LEARNING_RATES", "TrainConfig", "TrainProgress", "default_input_size"]

#: Learning rate used when ``TrainConfig.learning_rate`` is None, per optimiser.
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "sgd": 1e-2}
# Measured on 2 CPU cores (depth 4, 32 filters, batch 1): output pixels per second grow
# with the tile until the output is ~130 px wide (16k px/s at 68 px, 38k at 132, 40k at
# 164) while the step time keeps growing, so tiles default to the smallest with >= 128 px.
_DEFAULT_OUTPUT = 128


def default_input_size(depth: int) -> int:
    """Return the default training tile: the smallest valid input with >= 128 px output."""
    return smallest_input_for_output(_DEFAULT_OUTPUT, depth)


def _check_positive_ints(config: TrainConfig) -> None:
    for name in ("depth", "base_filters", "batch_size", "steps_per_epoch", "epochs"):
        value = getattr(config, name)
        low = 0 if name == "depth" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(config.validate_every, int) or config.validate_every < 1:
        raise ValueError(f"validate_every must be an integer >= 1, got {config.validate_every!r}")


def _check_choices(config: TrainConfig) -> None:
    if config.num_classes not in (2, 3):
        raise ValueError(f"num_classes must be 2 or 3, got {config.num_classes!r}")
    if config.optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {config.optimizer!r}")
    if config.monitor not in ("val_loss", "val_iou"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_iou', got {config.monitor!r}")
    if config.learning_rate is not None and not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate!r}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a U-Net with the paper's recipe.

    Attributes
    ----------
    num_classes : {2, 3}
        2: background / object (the paper); 3: background / interior / border, which
        separates touching objects (see ``postprocess.classes_to_instances``).
    depth, base_filters : int
        Network shape (the paper: 4 and 64; 32 filters train ~3x faster on a CPU).
    dropout : float
        Drop-out rate at the end of the contracting path (active while training only).
    input_size : int, optional
        Training tile (valid input size); default :func:`default_input_size` of ``depth``.
    batch_size, steps_per_epoch, epochs : int
        Tiles per step, steps per epoch, epochs.
    learning_rate : float, optional
        Default: 1e-3 for Adam, 1e-2 for SGD.
    optimizer : {"adam", "sgd"}
        Adam, or the paper's SGD with ``momentum`` (0.99).
    w0, sigma, use_weight_map, border_width
        Loss weighting, see :class:`~napari_tiled_unet.core.train.data.WeightOptions`.
    augment : bool
        Flips/rotations, elastic deformation (``elastic_sigma`` px on a ``elastic_grid``
        grid, the paper's 10 px / 3 x 3) and grey-value variation.
    scale_range : (float, float)
        With ``augment``: tiles are magnified by a random log-uniform factor in this range
        (``(1, 1)``: off), so that the model works on objects somewhat larger or smaller
        than its training objects.
    appearance : bool
        With ``augment``: also vary brightness between objects, chromatin speckle,
        background, blur and noise
        (:func:`~napari_tiled_unet.core.train.appearance.appearance_jitter`).
    seed : int
        Seeds weights, tiles, augmentation and drop-out.  Training calls
        ``keras.utils.set_random_seed(seed)``, which also seeds Python's, NumPy's and
        TensorFlow's global generators; runs repeat exactly as far as TensorFlow's CPU
        kernels are deterministic.
    validate_every : int
        Validate (and checkpoint) every this many epochs, and after the last.
    monitor : {"val_loss", "val_iou"}
        What the best checkpoint is chosen by.
    """

    num_classes: int = 3
    depth: int = 4
    base_filters: int = 32
    dropout: float = 0.5
    input_size: int | None = None
    batch_size: int = 1
    steps_per_epoch: int = 100
    epochs: int = 10
    learning_rate: float | None = None
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.99
    w0: float = 10.0
    sigma: float = 5.0
    use_weight_map: bool = True
    border_width: int = 1
    augment: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    scale_range: tuple[float, float] = (1.0, 1.0)
    appearance: bool = False
    seed: int = 0
    validate_every: int = 1
    monitor: Literal["val_loss", "val_iou"] = "val_loss"

    def __post_init__(self) -> None:
        _check_positive_ints(self)
        _check_choices(self)
        low, high = (float(v) for v in self.scale_range)
        if not 0 < low <= high:
            raise ValueError(
                f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}"
            )
        object.__setattr__(self, "scale_range", (low, high))
        if self.input_size is None:
            object.__setattr__(self, "input_size", default_input_size(self.depth))
        elif not is_valid_input_size(int(self.input_size), self.depth):
            raise ValueError(
                f"input_size {self.input_size} is not valid for depth {self.depth}; use "
                "napari_tiled_unet.nearest_valid_input_size or leave it unset"
            )

    @property
    def tile_input(self) -> int:
        """Input size of a training tile (px)."""
        return int(self.input_size or default_input_size(self.depth))

    @property
    def tile_output(self) -> int:
        """Output size of a training tile (px), where targets and weights are cut."""
        out = output_size(self.tile_input, self.depth)
        assert out is not None  # checked in __post_init__
        return out

    @property
    def lr(self) -> float:
        """The learning rate in effect."""
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.optimizer]

    @property
    def total_steps(self) -> int:
        """Steps of the whole run."""
        return self.steps_per_epoch * self.epochs

    @property
    def weight_options(self) -> WeightOptions:
        """Target scheme and weighting for :func:`.data.prepare_images`."""
        return WeightOptions(
            self.num_classes, self.use_weight_map, self.w0, self.sigma, self.border_width
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-friendly dict (for model metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, info: dict[str, Any], **overrides: Any) -> TrainConfig:
        """Rebuild settings from :meth:`to_dict` output, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**info, **overrides}.items() if k in known})

    @classmethod
    def for_model(cls, metadata: Any, **overrides: Any) -> TrainConfig:
        """Return settings matching a saved model's shape (fine-tuning), with ``overrides``.

        ``metadata`` is a :class:`~napari_tiled_unet.ModelMetadata`; its recorded training
        settings (if any) are the starting point, then its shape, then ``overrides``.
        """
        recorded = dict((metadata.training or {}).get("config", {}))
        shape = {
            "num_classes": metadata.num_classes,
            "depth": metadata.depth,
            "base_filters": metadata.base_filters,
        }
        if recorded.get("depth", metadata.depth) != metadata.depth:
            recorded.pop("input_size", None)
        return cls.from_dict({**recorded, **shape}, **overrides)


@dataclass(frozen=True)
class TrainProgress:
    """One training event: yielded after every step and after every validation.

    Attributes
    ----------
    epoch, epochs : int
        Current epoch (1-based) and number of epochs.
    step, total_steps : int
        Steps done in this run and steps of the whole run.
    loss : float
        Mean training loss over the current epoch so far.
    val_loss, val_iou : float or None
        Latest validation results (None before the first validation or without
        validation data).
    best : float or None
        Best monitored value so far (``TrainConfig.monitor``).
    elapsed : float
        Seconds since the run started (including data preparation).
    epoch_end : bool
        True for the event that closes an epoch (after its validation, if any).
    validated : bool
        True when this event carries a new validation result.
    checkpoint_saved : bool
        True when this event's validation/epoch wrote the checkpoint file.
    """

    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    val_loss: float | None = None
    val_iou: float | None = None
    best: float | None = None
    elapsed: float = 0.0
    epoch_end: bool = False
    validated: bool = False
    checkpoint_saved: bool = False

    @property
    def fraction(self) -> float:
        """Fraction of the run's steps done, in [0, 1]."""
        return self.step / self.total_steps if self.total_steps else 1.0

    @property
    def eta(self) -> float | None:
        """Estimated seconds left (steps left at the mean pace so far), None before a step."""
        if self.step == 0:
            return None
        return self.elapsed / self.step * (self.total_steps - self.step)
