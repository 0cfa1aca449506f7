"""What a model is: its metadata and the Keras model that runs, without file handling.

:class:`ModelMetadata` holds geometry, classes, normalisation and the training record;
:class:`UNetModel` is a Keras model together with its metadata.

:mod:`~napari_tiled_unet.core.model.files` saves and loads them;
:mod:`~napari_tiled_unet.core.model.inspect` reads the metadata of files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from napari_tiled_unet.core.model.geometry import NetworkSpec

__all__ = ["METADATA_MEMBER", "ModelMetadata", "UNetModel"]

#: Name of the metadata member inside the ``.keras`` zip archive.
METADATA_MEMBER = "napari_tiled_unet.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about the model besides its weights.

    Attributes
    ----------
    input_channels, num_classes, depth, base_filters : int
        The network's shape.
    class_names : tuple of str
        One name per output class.
    normalization : dict, optional
        How inputs must be normalised, e.g. ``{"method": "percentile", "low": 1.0,
        "high": 99.8, "per": "plane"}``; None feeds data unchanged.
    fixed_input_size : tuple of int, optional
        Input ``(Y, X)`` of a model that accepts only one size.
    training : dict, optional
        Free-form record of how the model was trained.
    object_size : float, optional
        Typical object diameter (px) of the training labels: images whose objects are
        larger or smaller are resampled to this scale before segmenting.
    name, description : str
        Shown to users in model lists.
    padded_halo : int, optional
        Set for a network with padded ("same") convolutions, such as many U-Nets of the
        BioImage Model Zoo: the px cropped from each side of its output so that tiles fit
        seamlessly (see :class:`~napari_tiled_unet.core.tiling.NetworkSpec`).  None for the
        paper's valid convolutions.
    """

    input_channels: int = 1
    num_classes: int = 2
    depth: int = 4
    base_filters: int = 64
    class_names: tuple[str, ...] = ()
    normalization: dict[str, Any] | None = field(
        default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8, "per": "plane"}
    )
    fixed_input_size: tuple[int, int] | None = None
    training: dict[str, Any] | None = None
    object_size: float | None = None
    name: str = "unet"
    description: str = ""
    padded_halo: int | None = None

    def __post_init__(self) -> None:
        if not self.class_names:
            default = (
                ("background", "foreground")
                if self.num_classes == 2
                else ("background", "interior", "border")
                if self.num_classes == 3
                else tuple(f"class {k}" for k in range(self.num_classes))
            )
            object.__setattr__(self, "class_names", default)
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for a model with "
                f"{self.num_classes} classes; give one name per class"
            )

    @property
    def spec(self) -> NetworkSpec:
        """The geometry tiling needs."""
        return NetworkSpec(
            self.depth,
            self.base_filters,
            self.input_channels,
            self.num_classes,
            self.fixed_input_size,
            self.padded_halo,
        )

    def to_json(self) -> str:
        """Serialise (with a format version) as JSON text."""
        return json.dumps({"format_version": _FORMAT_VERSION, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse JSON written by :meth:`to_json`, ignoring unknown keys."""
        info = json.loads(text)
        known = {k: v for k, v in info.items() if k in cls.__dataclass_fields__}
        for key in ("class_names", "fixed_input_size"):
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        return cls(**known)


@dataclass
class UNetModel:
    """A Keras U-Net together with its metadata; what :func:`segment` runs.

    Attributes
    ----------
    keras_model : keras.Model
        Maps ``(B, Y, X, C)`` float32 to class probabilities ``(B, Y', X', K)``.
    metadata : ModelMetadata
        Geometry, class names, normalisation, training record.
    source : str, optional
        The file it was loaded from.
    precision : {"float32", "bfloat16", "float16", "int8"}
        The arithmetic of ``keras_model`` (see :meth:`variant`).  An int8 model keeps the
        float32 ``keras_model`` and runs an ONNX Runtime session made for its images by
        :func:`~napari_tiled_unet.core.int8.int8_model` (until then, :attr:`calibrated` is
        False and it cannot run).
    tta : tuple of str
        Test-time augmentation: the transforms of
        :data:`~napari_tiled_unet.core.tta.TRANSFORMS` whose softmax is averaged
        (empty: none; each costs one network pass).
    int8 : Int8Gate, optional
        For a run that asked for int8: how int8 compared with float32 on held-out tiles
        (:class:`~napari_tiled_unet.core.int8.Int8Gate`), also when it fell back.
    """

    keras_model: Any
    metadata: ModelMetadata
    source: str | None = None
    precision: str = "float32"
    tta: tuple[str, ...] = ()
    _call: Any = field(default=None, repr=False, compare=False)
    _variants: dict[Any, UNetModel] = field(default_factory=dict, repr=False, compare=False)
    #: Batch and tile sizes that calls fell back to after running out of memory, per
    #: planned tile size, and whether that was said (see :mod:`napari_tiled_unet.core.memory`).
    memory_fallback: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    int8: Any = field(default=None, repr=False, compare=False)

    def variant(self, *, precision: str = "float32", tta: tuple[str, ...] = ()) -> UNetModel:
        """Return this network in ``precision`` and with test-time augmentation ``tta``.

        Variants are made once and kept (the reduced-precision model is a rebuilt copy
        with the same weights, see :func:`~napari_tiled_unet.core.precision.cast_keras_model`).
        """
        key = (precision, tuple(tta))
        if key == (self.precision, self.tta):
            return self
        if key not in self._variants and "int8" in (precision, self.precision):
            self._variants[key] = self._int8_variant(precision, tuple(tta))
        if key not in self._variants:
            keras_model = self.keras_model
            if precision != self.precision:
                if self.precision != "float32":
                    raise ValueError(
                        f"this model already runs in {self.precision}; start from the float32 one"
                    )
                from napari_tiled_unet.core.precision import cast_keras_model

                same = [v for (p, _), v in self._variants.items() if p == precision]
                keras_model = (
                    same[0].keras_model if same else cast_keras_model(self.keras_model, precision)
                )
            self._variants[key] = UNetModel(
                keras_model, self.metadata, self.source, precision, tuple(tta)
            )
        return self._variants[key]

    def _int8_variant(self, precision: str, tta: tuple[str, ...]) -> UNetModel:
        if self.precision == "int8" and precision == "int8":  # the same session
            return UNetModel(
                self.keras_model,
                self.metadata,
                self.source,
                "int8",
                tta,
                _call=self._call,
                int8=self.int8,
            )
        if self.precision != "float32":
            raise ValueError(
                f"this model already runs in {self.precision}; start from the float32 one"
            )
        raw = UNetModel(self.keras_model, self.metadata, self.source, "int8", tta)
        # the float32 model it came from: int8's reference, and its fallback
        raw._variants[("float32", ())] = self.variant(tta=())
        return raw

    @property
    def calibrated(self) -> bool:
        """False for an int8 model that has no quantised network yet (True otherwise)."""
        return self.precision != "int8" or self._call is not None

    @property
    def spec(self) -> NetworkSpec:
        """The geometry tiling needs."""
        return self.metadata.spec

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a ``(B, Y, X, C)`` float32 batch; return float32 probabilities.

        With test-time augmentation, the mean over the transforms in :attr:`tta`.

        The output has the size :meth:`NetworkSpec.output_size` gives (a padded network's
        output is cropped by its halo).
        """
        if self.tta:
            from napari_tiled_unet.core.tta import average_over

            return average_over(self._predict_once, batch, self.tta)
        return self._predict_once(batch)

    def _predict_once(self, batch: np.ndarray) -> np.ndarray:
        if self._call is None:
            if self.precision == "int8":
                raise ValueError(
                    "an int8 model is quantised on the images it segments; run it through "
                    "segment or a batch run, or use precision float32"
                )
            self._call = _compiled_call(self.keras_model, cpu_float32=self.precision == "float32")
        out = np.asarray(self._call(np.ascontiguousarray(batch, dtype=np.float32)))
        crop = self.metadata.padded_halo
        if crop:  # a padded network: drop the border its padding disturbs
            out = out[:, crop:-crop, crop:-crop]
        if out.shape[-1] == 1:  # a single sigmoid output: foreground probability
            out = np.concatenate([1.0 - out, out], axis=-1)
        return out.astype(np.float32, copy=False)


def _compiled_call(keras_model: Any, *, cpu_float32: bool = False) -> Any:
    """Return a graph-compiled inference call that accepts any batch and tile size.

    With ``cpu_float32`` on a machine without a GPU, the network's widest convolutions run
    as matrix products (:mod:`~napari_tiled_unet.core.model.matmul_conv`).
    """
    from napari_tiled_unet.core._keras import get_tf

    tf = get_tf()
    channels = keras_model.inputs[0].shape[-1]
    spec = tf.TensorSpec((None, None, None, channels), tf.float32)
    network = keras_model
    if cpu_float32 and not tf.config.list_physical_devices("GPU"):
        from napari_tiled_unet.core.model.matmul_conv import with_matmul_convolutions

        network = with_matmul_convolutions(keras_model)

    @tf.function(input_signature=[spec], reduce_retracing=True)
    def call(x: Any) -> Any:
        return network(x, training=False)

    return call
