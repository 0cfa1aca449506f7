"""Faults that once gave a silently wrong result or lost work: one test per class of fault.

1. non-finite and extreme pixel values; 2. training that breaks the model; 3. training with
nothing to learn; 4. outputs credited to the wrong input; 5. concurrent runs, corrupt
records, stale partial files; 6. messages that say what to do; and a property: the result
of ``segment`` does not depend on the tile size.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_tiled_unet import save_model, segment
from napari_tiled_unet.batch.files import RUN_RECORD, expand_inputs
from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.batch.run import run_batch
from tests.conftest import tiny_unet


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_model(tiny_unet(2, 4), tmp_path_factory.mktemp("model") / "tiny.keras")


def _image(shape=(64, 60), seed=0, top=4000.0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * top).astype(np.float32)


def _caught(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        value = fn(*args, **kwargs)
    return value, [str(w.message) for w in seen if issubclass(w.category, UserWarning)]


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# 1. Non-finite values -------------------------------------------------------------------


def test_one_nan_pixel_is_one_background_level_pixel_not_a_wiped_out_image(unet2):
    from napari_tiled_unet.core.normalize import PercentileNormalizer

    image = _image()
    image[30, 20] = np.nan
    result, said = _caught(segment, unet2, image)
    assert np.isfinite(result.probabilities).all()
    assert said == [
        "1 of 3840 pixel values of the image are NaN or infinite; they were segmented as "
        "the low percentile (0 after normalisation)"
    ]
    # Exactly: statistics of the finite pixels, the bad pixel at the low percentile.
    norm = PercentileNormalizer()
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [1, 99.8])
    filled = np.where(np.isfinite(image), image, lo).astype(np.float32)
    expected = segment(unet2, norm.apply(filled[..., None], lo, hi)[..., 0], normalize=None)
    np.testing.assert_array_equal(result.probabilities, expected.probabilities)
    clean = segment(unet2, np.nan_to_num(image, nan=float(lo))).labels
    assert (clean == result.labels).mean() > 0.999


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("normalize", ["auto", None])
def test_an_image_without_a_finite_pixel_is_an_error(unet2, value, normalize):
    with pytest.raises(ValueError, match="no finite pixel value: all 1600 are NaN or inf"):
        segment(unet2, np.full((40, 40), value), normalize=normalize)


def test_huge_floats_and_wide_integers_are_normalised_without_overflow(unet2):
    base = np.random.default_rng(1).random((48, 52))
    reference = segment(unet2, base).probabilities
    for scaled in (base * 1e300, (base + 1) * 1e300, base * 1e-300, base * 1e30):
        got = segment(unet2, scaled).probabilities
        np.testing.assert_allclose(np.abs(got - reference).max(), 0, atol=1e-5)
    counts = (base * 1000).astype(np.int64)
    wide = segment(unet2, counts + 2**40).probabilities  # float32 would round by 131072
    np.testing.assert_allclose(wide, segment(unet2, counts).probabilities, atol=1e-5)


def test_batch_streamed_and_whole_planes_handle_nan_alike(tmp_path, model_file):
    stack = np.stack([_image(seed=2), _image(seed=3)])
    stack[0, 5, 5] = np.nan
    stack[1, :3] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    options = dict(model=model_file, probabilities=True, tile_size=60)
    whole, said = _caught(run_batch, [tmp_path / "nan.tif"], tmp_path / "whole", **options)
    streamed = run_batch(
        [tmp_path / "nan.tif"], tmp_path / "streamed", max_plane_bytes=1, **options
    )
    assert whole.ok and streamed.ok and streamed.files[0].details["streamed"]
    assert said == [
        "181 of 7680 pixel values of nan.tif are NaN or infinite; they were segmented as the "
        "low percentile (0 after normalisation)"
    ]
    assert (
        whole.files[0].message
        == "181 NaN or infinite pixel values segmented as the low percentile"
    )
    for name in ("nan_labels.tif", "nan_probabilities.tif"):
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "streamed" / name
        ).read_bytes()
    probs = read_probabilities(tmp_path / "whole" / "nan_probabilities.tif")
    in_memory = segment(tiny_unet(2, 4), stack, axes="ZYX", tile_size=60).probabilities
    assert np.isfinite(probs).all()
    np.testing.assert_array_equal(probs, in_memory)


def test_lazy_segmentation_handles_nan_like_in_memory(unet2):
    import dask.array as da

    stack = np.stack([_image((120, 100), seed=4), _image((120, 100), seed=5)])
    stack[0, 5, 5], stack[1, 60:70, 50] = np.nan, np.inf
    expected = segment(unet2, stack, axes="ZYX", tile_size=60).probabilities
    for chunks in (None, 48):  # whole planes as tasks; chunks with streamed statistics
        lazy, said = _caught(
            segment,
            unet2,
            da.from_array(stack),
            axes="ZYX",
            tile_size=60,
            lazy=True,
            chunks=chunks,
        )
        # Equal up to float rounding: chunks may call the network with other batch sizes,
        # and TensorFlow's CPU kernels may round differently per batch size (1.2e-7 seen).
        np.testing.assert_allclose(lazy.probabilities.compute(), expected, atol=1e-6)
    assert said == [
        "11 of 24000 pixel values of the image are NaN or infinite; they were segmented as "
        "the low percentile (0 after normalisation)"
    ]


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["float16", "float32", "float64"]),
    rows=st.integers(1, 200),
    channels=st.integers(1, 3),
    bad=st.floats(0, 0.9),
    seed=st.integers(0, 2**16),
)
def test_streamed_statistics_ignore_non_finite_values_exactly(dtype, rows, channels, bad, seed):
    from napari_tiled_unet.core.normalize import PercentileNormalizer
    from napari_tiled_unet.core.percentile import blocks_reducer, normalizer_statistics

    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((rows, channels)) * 100).astype(dtype)
    data[rng.random(data.shape) < bad] = rng.choice([np.nan, np.inf, -np.inf])
    data[0] = 1.0  # every channel keeps a finite value
    norm = PercentileNormalizer(low=2.5, high=97)
    parts = np.array_split(data, 3)
    got = normalizer_statistics(
        norm, blocks_reducer(lambda: parts), dtype=data.dtype, channels=channels, count=rows
    )
    want = norm.statistics(data)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert np.isfinite(want).all()


# 2. Training that breaks the model --------------------------------------------------------

TINY_TRAIN = dict(depth=1, base_filters=4, input_size=40, batch_size=2, steps_per_epoch=4)


def _squares(size=64):
    image = np.zeros((size, size), np.float32)
    labels = np.zeros((size, size), np.int32)
    for k, (y, x) in enumerate([(8, 8), (8, 36), (36, 8), (36, 36)], start=1):
        labels[y : y + 18, x : x + 18] = k
        image[y : y + 18, x : x + 18] = 1.0
    return image + np.random.default_rng(0).random(image.shape).astype(np.float32) * 0.1, labels


def test_training_on_an_image_with_a_nan_pixel_keeps_the_model_finite(tmp_path):
    from napari_tiled_unet import load_model
    from napari_tiled_unet.core.train.config import TrainConfig
    from napari_tiled_unet.core.train.trainer import train

    image, labels = _squares()
    image[10, 10] = np.nan
    config = TrainConfig(**TINY_TRAIN, epochs=2)
    model, said = _caught(train, config, [image], [labels], checkpoint=tmp_path / "m.keras")
    assert said == [
        "1 of 4096 pixels of the training images are NaN or infinite; they get loss weight 0 "
        "(as if not annotated)"
    ]
    saved = load_model(tmp_path / "m.keras")
    for weights in (model.keras_model.get_weights(), saved.keras_model.get_weights()):
        assert all(np.isfinite(w).all() for w in weights)
    probs = segment(saved, _squares()[0]).probabilities
    assert np.isfinite(probs).all() and probs.std() > 1e-3  # not a constant output


def test_divergence_stops_training_before_a_weight_becomes_non_finite(tmp_path):
    from napari_tiled_unet import load_model
    from napari_tiled_unet.core.train.config import TrainConfig
    from napari_tiled_unet.core.train.trainer import iter_train

    image, labels = _squares()
    config = TrainConfig(**TINY_TRAIN, epochs=50, optimizer="sgd", learning_rate=1e6)
    checkpoint = tmp_path / "m.keras"
    steps = iter_train(config, [image * 1e4], [labels], checkpoint=checkpoint)
    with pytest.raises(ValueError, match=r"training diverged .* lower the learning rate"):
        for _ in steps:
            pass
    if checkpoint.exists():  # an epoch finished before: that model is intact
        weights = load_model(checkpoint).keras_model.get_weights()
        assert all(np.isfinite(w).all() for w in weights)


# 3. Training with nothing to learn --------------------------------------------------------


def _nothing_to_learn(case):
    image, labels = _squares()
    ignore = None
    if case == "no object":
        labels = np.zeros_like(labels)
    elif case == "all not annotated":
        ignore = np.ones(labels.shape, bool)
    elif case == "objects only where annotated":
        ignore = labels == 0
    elif case == "no interior":
        labels = np.zeros_like(labels)
        labels[10:50:4, 10:50:4] = np.arange(1, 101).reshape(10, 10)
    elif case == "only NaN annotated":
        image = np.where(labels > 0, np.nan, image)
        ignore = labels == 0
    return image, labels, ignore


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no object", "the labels hold no object in any training image"),
        ("all not annotated", "every training pixel is marked not annotated"),
        ("objects only where annotated", "no annotated pixel of class 'background'"),
        ("no interior", "no annotated pixel of class 'object interior'"),
        ("only NaN annotated", "every training pixel is marked not annotated"),
    ],
)
def test_training_with_nothing_to_learn_is_refused_before_it_starts(tmp_path, case, message):
    from napari_tiled_unet.core.train.config import TrainConfig
    from napari_tiled_unet.core.train.trainer import iter_train

    image, labels, ignore = _nothing_to_learn(case)
    config = TrainConfig(**TINY_TRAIN, epochs=1, num_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = iter_train(
            config,
            [image],
            [labels],
            ignore=None if ignore is None else [ignore],
            checkpoint=tmp_path / "m.keras",
        )
        with pytest.raises(ValueError, match=message):
            next(steps)
    assert not (tmp_path / "m.keras").exists()


def test_train_command_keeps_an_existing_model_unless_overwrite(tmp_path, capsys):
    from napari_tiled_unet.cli.main import main

    image, labels = _squares()
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_labels.tif", labels.astype(np.uint16))
    target = tmp_path / "model.keras"
    target.write_bytes(b"an earlier model")
    argv = ["train", "--images", str(tmp_path / "a.tif"), "--labels"]
    argv += [str(tmp_path / "a_labels.tif"), "-o", str(target), "--depth", "1"]
    argv += ["--base-filters", "4", "--tile-size", "40", "--steps", "2", "--epochs", "1"]
    assert main(argv) == 2
    assert "model.keras exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert target.read_bytes() == b"an earlier model"
    zero = tmp_path / "zero_labels.tif"
    tifffile.imwrite(zero, np.zeros_like(labels, np.uint16))
    nothing = [*argv[:4], str(zero), *argv[5:], "--overwrite"]
    assert main(nothing) == 2
    assert "hold no object" in capsys.readouterr().err
    assert target.read_bytes() == b"an earlier model"
    assert main([*argv, "--overwrite"]) == 0
    assert target.read_bytes()[:2] == b"PK"  # a .keras zip now


# 4. Outputs and the inputs that made them -------------------------------------------------


def _write(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, _image((40, 44), seed=seed).astype(np.uint16))
    return path


def test_same_name_from_another_folder_is_neither_skipped_nor_replaced(tmp_path, model_file):
    a, b = _write(tmp_path / "a" / "x.tif", 1), _write(tmp_path / "b" / "x.tif", 2)
    out = tmp_path / "out"
    assert run_batch([a], out, model=model_file).ok
    made_by_a = (out / "x_labels.tif").read_bytes()
    for overwrite in (False, True):
        result = run_batch([b], out, model=model_file, overwrite=overwrite).files[0]
        assert result.status == "failed"
        assert result.message == (
            f"x_labels.tif was made from another file, {a.resolve()}; segment this one into "
            "another output folder (or delete that output to redo it from this file)"
        )
        assert (out / "x_labels.tif").read_bytes() == made_by_a
    runs = json.loads((out / RUN_RECORD).read_text())["runs"]
    done = [f for r in runs for f in r["files"] if f["status"] == "done"]
    assert [f["input_path"] for f in done] == [str(a.resolve())]
    assert done[0]["input_size"] == a.stat().st_size
    assert run_batch([a], out, model=model_file).files[0].status == "skipped"


def test_a_changed_input_is_redone_only_with_overwrite(tmp_path, model_file):
    x = _write(tmp_path / "x.tif", 1)
    out = tmp_path / "out"
    run_batch([x], out, model=model_file)
    _write(x, 5)
    os.utime(x, ns=(x.stat().st_atime_ns, x.stat().st_mtime_ns + 10**9))
    again = run_batch([x], out, model=model_file).files[0]
    assert (
        again.status == "failed" and "made from an earlier version of this file" in again.message
    )
    assert run_batch([x], out, model=model_file, overwrite=True).files[0].status == "done"
    labels = tifffile.imread(out / "x_labels.tif")
    np.testing.assert_array_equal(labels, segment(tiny_unet(2, 4), tifffile.imread(x)).labels)


def test_inputs_in_the_output_folder_are_never_taken_for_outputs(tmp_path, model_file):
    img, img_labels = _write(tmp_path / "img.tif", 1), _write(tmp_path / "img_labels.tif", 2)
    before = img_labels.read_bytes()
    for overwrite in (False, True):
        summary = run_batch([tmp_path], tmp_path, model=model_file, overwrite=overwrite)
        results = {os.path.basename(f.input): f for f in summary.files}
        assert results["img.tif"].status == "failed"
        assert results["img.tif"].message == (
            "its output img_labels.tif would replace an input of this run; segment it into "
            "another output folder"
        )
        assert results["img_labels.tif"].status == "done"
        assert img_labels.read_bytes() == before
    assert (tmp_path / "img_labels_labels.tif").exists() and img.exists()
    # The labels made here are outputs now, not inputs of the next run.
    files, _ = expand_inputs([tmp_path], exclude=tmp_path)
    assert sorted(p.name for p in files) == ["img.tif", "img_labels.tif"]


def test_an_output_no_record_accounts_for_is_not_skipped(tmp_path, model_file):
    x = _write(tmp_path / "x.tif", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_labels.tif").write_bytes(b"someone else's")
    result = run_batch([x], out, model=model_file).files[0]
    assert result.status == "failed"
    assert "x_labels.tif exists but no run record says which input made it" in result.message
    assert (out / "x_labels.tif").read_bytes() == b"someone else's"
    assert run_batch([x], out, model=model_file, overwrite=True).ok


# 5. Concurrent runs, corrupt records, stale partial files ---------------------------------


def test_concurrent_runs_into_one_folder_lose_no_entry(tmp_path, model_file):
    inputs = [_write(tmp_path / f"in{k}" / f"x{k}.tif", k) for k in range(3)]
    out, summaries = tmp_path / "out", {}

    def run(k):
        summaries[k] = run_batch([inputs[k]], out, model=model_file)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert all(summaries[k].ok for k in range(3))
    runs = json.loads((out / RUN_RECORD).read_text())["runs"]
    assert sorted(r["status"] for r in runs) == ["completed"] * 3
    entries = sorted(os.path.basename(f["input"]) for r in runs for f in r["files"])
    assert entries == ["x0.tif", "x1.tif", "x2.tif"]
    waits = [str(w.message) for w in seen if "waiting for another run" in str(w.message)]
    assert waits and all(f"process {os.getpid()} on" in w for w in waits)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [RUN_RECORD, "x0_labels.tif", "x1_labels.tif", "x2_labels.tif"]
    )


def test_concurrent_processes_into_one_folder_lose_no_entry(tmp_path, model_file):
    from napari_tiled_unet.batch.folderlock import FolderLock

    inputs = [_write(tmp_path / f"in{k}" / f"p{k}.tif", k) for k in range(3)]
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "napari_tiled_unet.cli.main", "segment"]
    # This process holds the folder until a run says it waits, so that the runs certainly
    # meet (on a busy machine they might otherwise start one after another).
    holder = FolderLock(out, {"command": ["test"]})
    assert holder.acquire(timeout=0)
    logs = [tmp_path / f"err{k}.txt" for k in range(3)]
    runs = []
    for path, log in zip(inputs, logs, strict=True):
        with open(log, "w") as stderr:
            runs.append(
                subprocess.Popen(
                    [*command, str(path), "-o", str(out), "--model", str(model_file), "-q"],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    text=True,
                )
            )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(
        "waiting for another run" in log.read_text() for log in logs
    ):
        time.sleep(0.2)
    holder.release()
    for run in runs:
        run.wait(timeout=300)
    errors = [log.read_text() for log in logs]
    assert [run.returncode for run in runs] == [0, 0, 0], errors
    record = json.loads((out / RUN_RECORD).read_text())["runs"]
    assert sorted(r["status"] for r in record) == ["completed"] * 3
    entries = sorted(os.path.basename(f["input"]) for r in record for f in r["files"])
    assert entries == ["p0.tif", "p1.tif", "p2.tif"]
    assert any("warning: waiting for another run to finish writing into" in e for e in errors)


def test_a_second_run_says_what_it_waits_for_and_can_be_stopped(tmp_path, model_file):
    from napari_tiled_unet.batch.folderlock import FolderLock

    x = _write(tmp_path / "x.tif", 1)
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out, {"command": ["napari-tiled-unet", "segment", "big"]}) as held:
        assert held.acquire()
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        summary, said = _caught(run_batch, [x], out, model=model_file, stop=stop)
        assert summary.cancelled and summary.files == ()
        assert len(said) == 1 and said[0].startswith(
            f"waiting for another run to finish writing into {out} (process {os.getpid()} on "
        )
        assert said[0].endswith(
            ": napari-tiled-unet segment big); stop it or use another output folder"
        )
        with pytest.raises(ValueError, match="another run is writing into"):
            FolderLock(out).acquire(timeout=0)
    assert not (out / ".napari-tiled-unet.lock").exists()
    # A lock file left by a dead process holds no lock: the next run takes it over at once.
    (out / ".napari-tiled-unet.lock").write_text(json.dumps({"pid": _dead_pid(), "host": "h"}))
    summary, said = _caught(run_batch, [x], out, model=model_file)
    assert summary.ok and said == []


def test_a_corrupt_record_is_kept_aside_not_replaced(tmp_path, model_file):
    x = _write(tmp_path / "x.tif", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / RUN_RECORD).write_text('{"format": "napari-tiled-unet run record", "runs": [{')
    summary, said = _caught(run_batch, [x], out, model=model_file)
    aside = [p for p in out.iterdir() if p.name.startswith("napari-tiled-unet-run.unreadable-")]
    assert summary.ok and len(aside) == 1
    assert aside[0].read_text() == '{"format": "napari-tiled-unet run record", "runs": [{'
    assert len(said) == 1 and said[0].startswith(f"the run record {out / RUN_RECORD} could not")
    assert f"it was kept as {aside[0].name}" in said[0]
    assert len(json.loads((out / RUN_RECORD).read_text())["runs"]) == 1
    # Neither the kept record nor the labels are inputs of the next run into the folder.
    assert expand_inputs([out], exclude=out)[0] == []


def test_partial_files_of_dead_runs_are_removed_at_the_next_start(tmp_path, model_file):
    x = _write(tmp_path / "x.tif", 1)
    out = tmp_path / "out"
    out.mkdir()
    host = socket.gethostname()
    dead = out / f".other_labels.tif.{host}-{_dead_pid()}.partial"
    elsewhere = out / ".other_probabilities.tif.another.host-12-34.partial"
    alive = out / f".mine_labels.tif.{host}-{os.getpid()}.partial"
    for path in (dead, elsewhere, alive):
        path.write_bytes(b"\0" * 1000)
    assert run_batch([x], out, model=model_file).ok
    assert not dead.exists() and not elsewhere.exists()
    assert alive.exists()  # a live process of this host may still be writing it


# 6. Messages that say what to do ----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "5-D",
            "cannot tell the axes of a 5D image (2, 3, 2, 40, 40); pass one letter per "
            "axis, e.g. --axes TZCYX",
        ),
        (
            "planar",
            "the image has 3 channel(s) (axis C) but the model expects 1; pick one "
            "channel or a model made for this image; if its samples are planes of a stack, pass "
            "axes 'ZYX' (--axes ZYX)",
        ),
        (
            "complex",
            "the file holds complex64 pixels (complex numbers), which cannot be "
            "segmented; save the image as integers or floats",
        ),
        (
            "outdir is a file",
            "the output folder {out} is an existing file; give the path of a "
            "folder (it is created if missing)",
        ),
    ],
)
def test_command_line_messages_say_what_to_do(tmp_path, model_file, capsys, case, expected):
    from napari_tiled_unet.cli.main import main

    path, out = tmp_path / "in.tif", tmp_path / "out"
    if case == "5-D":
        tifffile.imwrite(path, np.zeros((2, 3, 2, 40, 40), np.uint8))
    elif case == "planar":
        data = np.zeros((3, 40, 40), np.uint8)
        tifffile.imwrite(
            path, data, photometric="minisblack", planarconfig="separate", metadata=None
        )
    elif case == "complex":
        tifffile.imwrite(path, np.zeros((40, 40), np.complex64))
    else:
        tifffile.imwrite(path, np.zeros((40, 40), np.uint8))
        out.write_text("a file")
    status = main(["segment", str(path), "-o", str(out), "--model", str(model_file), "-q"])
    err = capsys.readouterr().err
    assert status == 2
    where = "" if case == "outdir is a file" else f"{path}: "
    assert f"napari-tiled-unet: error: {where}{expected.format(out=out)}\n" in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_a_glob_over_a_symlinked_folder_loop_visits_each_folder_once(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.tif", "a/b/y.tif"):
        (tmp_path / name).write_text("x")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a")  # a/b/up/b/up/b/...
    files, problems = expand_inputs([str(tmp_path / "**" / "*.tif")])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a/b/y.tif", "a/x.tif"]
    assert problems == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"tile_size": 300.5}, TypeError, "tile_size must be an integer or a (Y, X) pair"),
        ({"tile_size": "300"}, TypeError, "tile_size must be an integer"),
        ({"tile_size": True}, TypeError, "tile_size must be an integer"),
        ({"tile_size": (60, 60, 60)}, TypeError, "a (Y, X) pair of integers"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1, got 0"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an integer, got 2.0"),
        ({"memory_budget": -1}, ValueError, "memory_budget must be at least 1"),
    ],
)
def test_the_python_api_checks_its_arguments(unet2, options, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        segment(unet2, np.zeros((40, 40), np.uint8), **options)


def test_segment_takes_bool_images_and_names_unsupported_types(unet2):
    mask = np.zeros((40, 44), bool)
    mask[10:30, 10:30] = True
    got = segment(unet2, mask)
    expected = segment(unet2, mask.astype(np.uint8))
    np.testing.assert_array_equal(got.probabilities, expected.probabilities)
    for image, kind in (
        (np.zeros((40, 40), np.complex64), "complex"),
        (np.array([["a"]]), "text"),
    ):
        with pytest.raises(TypeError, match=f"images of pixel type .* \\({kind}\\) cannot be"):
            segment(unet2, image)


# 7. Tile-size independence ----------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 150),
    dtype=st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool"]),
    first=st.sampled_from([44, 60, 76, 108, 140]),
    second=st.sampled_from([44, 60, 76, 108, 140, 204]),
    seed=st.integers(0, 1000),
)
def test_segment_does_not_depend_on_the_tile_size(height, width, dtype, first, second, seed):
    """With the default normalisation, tiles of any size agree within 1e-5 (see README)."""
    unet = tiny_unet(2, 4)
    rng = np.random.default_rng(seed)
    top = {"uint8": 255, "uint16": 60000, "int32": 2**31 - 1, "bool": 2}.get(dtype, 1000.0)
    image = (rng.random((height, width)) * top).astype(dtype)
    one = segment(unet, image, tile_size=first).probabilities
    two = segment(unet, image, tile_size=second).probabilities
    assert one.shape == (height, width, 2) and np.isfinite(one).all()
    assert np.abs(one - two).max() <= 1e-5
