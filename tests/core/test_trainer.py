"""Training loop: config, data stream, learning, checkpoints, cancel, resume, metadata."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_tiled_unet import load_model, segment
from napari_tiled_unet.core.model.geometry import is_valid_input_size
from napari_tiled_unet.core.train.config import TrainConfig, TrainProgress, default_input_size
from napari_tiled_unet.core.train.data import WeightOptions, prepare_images, sample_batch
from napari_tiled_unet.core.train.engine import build_training_model
from napari_tiled_unet.core.train.trainer import iter_train, train


def _squares(seed: int, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Bright 10x10 squares (instances) on a dark noisy background: trivially learnable."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, n), np.int32)
    for k in range(1, 6):
        y, x = rng.integers(0, n - 12, 2)
        labels[y : y + 10, x : x + 10] = k
    image = (labels > 0) * 200.0 + 100.0 + rng.normal(0, 10, (n, n))
    return image.astype(np.uint16), labels


DATA = [_squares(0), _squares(1)]
VAL = _squares(9)
IMAGES, LABELS = [d[0] for d in DATA], [d[1] for d in DATA]
TINY = {"num_classes": 2, "depth": 1, "base_filters": 8, "input_size": 40, "batch_size": 2}


def _tiny(**changes) -> TrainConfig:
    settings = {
        **TINY,
        "steps_per_epoch": 20,
        "epochs": 3,
        "learning_rate": 1e-2,
        "augment": False,
        "dropout": 0.0,
        "use_weight_map": False,
        **changes,
    }
    return TrainConfig(**settings)


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


# --- configuration and data ---------------------------------------------------------------


def test_core_training_modules_import_no_tensorflow() -> None:
    modules = [
        "metrics",
        "train.loss",
        "train.config",
        "train.data",
        "train.engine",
        "train.trainer",
    ]
    code = "import sys\n" + "".join(f"import napari_tiled_unet.core.{m}\n" for m in modules)
    code += "print([m for m in ('tensorflow', 'keras', 'napari', 'qtpy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_defaults_and_errors() -> None:
    config = TrainConfig()
    assert (config.num_classes, config.depth, config.optimizer, config.dropout) == (
        3,
        4,
        "adam",
        0.5,
    )
    assert config.input_size == default_input_size(4) == 316 and config.tile_output == 132
    assert all(is_valid_input_size(default_input_size(d), d) for d in range(5))
    assert TrainConfig(optimizer="sgd").lr == 1e-2 and config.lr == 1e-3
    for bad in (
        {"num_classes": 4},
        {"input_size": 100},
        {"optimizer": "rmsprop"},
        {"learning_rate": 0.0},
        {"epochs": 0},
        {"dropout": 1.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
            TrainConfig(**bad)


def test_config_for_model_takes_the_shape_and_keeps_overrides() -> None:
    from napari_tiled_unet import ModelMetadata

    meta = ModelMetadata(num_classes=2, depth=2, base_filters=8, training={"config": {"w0": 3.0}})
    config = TrainConfig.for_model(meta, epochs=2)
    assert (config.num_classes, config.depth, config.base_filters) == (2, 2, 8)
    assert (config.w0, config.epochs, config.input_size) == (3.0, 2, default_input_size(2))
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_prepare_images_ignore_gets_zero_weight_and_errors() -> None:
    ignore = np.zeros((64, 64), bool)
    ignore[:, :20] = True
    options = WeightOptions(n_classes=3)
    (item,) = prepare_images([IMAGES[0]], [LABELS[0]], options=options, ignore=[ignore])
    assert item.image.shape == (64, 64, 1) and item.image.dtype == np.float32
    assert np.all(item.weights[ignore] == 0) and np.all(item.weights[~ignore] > 0)
    assert set(np.unique(item.classes)) == {0, 1, 2}
    with pytest.raises(ValueError, match="shape"):
        prepare_images([IMAGES[0][:50]], [LABELS[0]], options=options)
    with pytest.raises(ValueError, match="integer"):
        prepare_images([IMAGES[0]], [LABELS[0].astype(float)], options=options)
    with pytest.raises(ValueError, match="one label image per image"):
        prepare_images(IMAGES, LABELS[:1], options=options)


def test_sample_batch_is_seeded_and_keeps_targets_aligned() -> None:
    # The image *is* the class map, so input centre and targets must agree after augmenting.
    labels = LABELS[0]
    image = (labels > 0).astype(np.float32)
    items = prepare_images([image], [labels], options=WeightOptions(), normalizer=None)
    draw = lambda seed, augment: sample_batch(  # noqa: E731
        items,
        batch_size=4,
        input_size=40,
        output_size=24,
        rng=np.random.default_rng(seed),
        augment=augment,
    )
    x, y, w = draw(0, False)
    assert (x.shape, y.shape, w.shape) == ((4, 40, 40, 1), (4, 24, 24), (4, 24, 24))
    np.testing.assert_array_equal(x[:, 8:32, 8:32, 0], y)
    x, y, _ = draw(3, True)
    centre = x[:, 8:32, 8:32, 0]
    for tile, target in zip(centre, y):
        mid = (tile.min() + tile.max()) / 2
        assert np.mean((tile > mid) == (target > 0)) > 0.95
    for a, b in zip(draw(3, True), draw(3, True)):
        np.testing.assert_array_equal(a, b)


def test_progress_fraction_and_eta() -> None:
    event = TrainProgress(epoch=1, epochs=2, step=10, total_steps=40, loss=0.5, elapsed=5.0)
    assert event.fraction == 0.25 and event.eta == pytest.approx(15.0)
    assert TrainProgress(1, 1, 0, 4, 0.0).eta is None


# --- training -----------------------------------------------------------------------------


def test_training_learns_a_trivial_problem_and_records_it(tmp_path) -> None:
    events, model = _drain(
        iter_train(
            _tiny(),
            IMAGES,
            LABELS,
            val_images=[VAL[0]],
            val_labels=[VAL[1]],
            checkpoint=tmp_path / "m.keras",
        )
    )
    assert [e.step for e in events if not e.epoch_end] == list(range(1, 61))
    ends = [e for e in events if e.epoch_end]
    assert [e.epoch for e in ends] == [1, 2, 3] and all(e.validated for e in ends)
    assert ends[-1].loss < 0.5 * ends[0].loss
    assert ends[-1].val_iou > 0.9 and ends[-1].val_loss < ends[0].val_loss
    assert all(b.elapsed >= a.elapsed for a, b in zip(events, events[1:]))
    record = model.metadata.training
    assert record["steps_run"] == 60 and record["steps"] == 20 * record["epochs_done"]
    assert record["config"]["learning_rate"] == 1e-2
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert record["train_shapes"] == [[64, 64, 1], [64, 64, 1]]
    assert model.metadata.normalization["method"] == "percentile"
    from napari_tiled_unet.core.sizing import measure_object_size

    assert model.metadata.object_size == pytest.approx(measure_object_size(list(LABELS)), 0.01)
    labels = segment(model, VAL[0]).labels
    assert np.mean((labels > 0) == (VAL[1] > 0)) > 0.95


def test_same_seed_same_losses_and_weight_map_changes_the_loss() -> None:
    config = _tiny(epochs=1, steps_per_epoch=4, augment=True, dropout=0.5)
    first, _ = _drain(iter_train(config, IMAGES, LABELS))
    second, _ = _drain(iter_train(config, IMAGES, LABELS))
    np.testing.assert_allclose([e.loss for e in first], [e.loss for e in second], rtol=1e-5)
    weighted, _ = _drain(
        iter_train(_tiny(epochs=1, steps_per_epoch=4, use_weight_map=True), IMAGES, LABELS)
    )
    assert weighted[0].loss != pytest.approx(first[0].loss, rel=1e-3)


def test_best_checkpoint_is_returned_and_on_disk(tmp_path) -> None:
    path = tmp_path / "best.keras"
    events, model = _drain(
        iter_train(
            _tiny(monitor="val_iou"),
            IMAGES,
            LABELS,
            val_images=[VAL[0]],
            val_labels=[VAL[1]],
            checkpoint=path,
        )
    )
    ends = [e for e in events if e.epoch_end]
    best_epoch = int(np.argmax([e.val_iou for e in ends])) + 1
    assert ends[-1].best == max(e.val_iou for e in ends)
    assert [e.checkpoint_saved for e in ends][best_epoch - 1]
    saved = load_model(path)
    assert saved.metadata.training["epochs_done"] == best_epoch
    assert model.metadata.training["epochs_done"] == best_epoch
    assert model.metadata.training["steps"] == 20 * best_epoch
    for a, b in zip(saved.keras_model.get_weights(), model.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cancel_keeps_the_last_saved_checkpoint(tmp_path) -> None:
    path = tmp_path / "ckpt.keras"
    gen = iter_train(_tiny(), IMAGES, LABELS, checkpoint=path)  # no validation: every epoch
    for event in gen:
        if event.epoch_end:
            assert event.checkpoint_saved and not event.validated
            saved_weights = [w.copy() for w in load_model(path).keras_model.get_weights()]
        if event.epoch == 2 and event.step == 30:
            break
    gen.close()
    model = load_model(path)
    assert model.metadata.training["steps"] == 20 and model.metadata.training["epochs_done"] == 1
    for a, b in zip(model.keras_model.get_weights(), saved_weights):
        np.testing.assert_array_equal(a, b)


def test_resume_starts_from_the_saved_weights(tmp_path) -> None:
    path = tmp_path / "first.keras"
    train(_tiny(), IMAGES, LABELS, checkpoint=path)
    first = load_model(path)
    config = TrainConfig.for_model(first.metadata, epochs=1, steps_per_epoch=3)
    keras_model = build_training_model(config, 1, first)
    for a, b in zip(keras_model.get_weights(), first.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    resumed, model = _drain(iter_train(config, IMAGES, LABELS, init=path))
    fresh, _ = _drain(iter_train(config, IMAGES, LABELS))
    assert resumed[0].loss < 0.5 * fresh[0].loss  # same first batch, trained weights
    assert model.metadata.training["steps"] == 63 and model.metadata.training["init"] == path.name
    with pytest.raises(ValueError, match="initial model"):
        train(_tiny(base_filters=4), IMAGES, LABELS, init=first)


def test_bad_inputs_raise_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.keras"):
        next(iter_train(_tiny(), IMAGES, LABELS, checkpoint=tmp_path / "m.h5"))
    with pytest.raises(ValueError, match="channels"):
        rgb = np.repeat(VAL[0][..., None], 3, axis=-1)
        next(iter_train(_tiny(), IMAGES, LABELS, val_images=[rgb], val_labels=[VAL[1]]))
    with pytest.raises(TypeError, match="init"):
        next(iter_train(_tiny(), IMAGES, LABELS, init=42))
