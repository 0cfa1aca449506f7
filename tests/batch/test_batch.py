"""The batch engine: folders of stacks, metadata, errors, restarts, streaming, cancelling."""

import json
import threading

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import PercentileNormalizer, save_model, segment
from napari_tiled_unet.batch.files import RUN_RECORD, expand_inputs
from napari_tiled_unet.batch.modelref import file_sha256
from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.batch.run import (
    FileFinished,
    FileStarted,
    PlaneProgress,
    iter_batch,
    run_batch,
)
from tests.conftest import tiny_unet

# name -> (data, axes of the data, how it is written)
STACKS = {
    "ij8": ((4, 64, 56), "ZYX", np.uint8),
    "ij16": ((2, 3, 48, 40), "TZYX", np.uint16),
    "plain32": ((3, 40, 50), "ZYX", np.float32),
    "ome16": ((3, 52, 44), "ZYX", np.uint16),
    "big2d": ((70, 90), "YX", np.float64),
}


def make_data(name, rng):
    shape, axes, dtype = STACKS[name]
    data = rng.random(shape) * (200 if dtype == np.uint8 else 4000)
    return data.astype(dtype), axes


def write_stack(folder, name, rng):
    """Write one input the way microscopes and Fiji do; return (data, axes)."""
    data, axes = make_data(name, rng)
    path = folder / f"{name}.tif"
    if name.startswith("ij"):
        tifffile.imwrite(
            path,
            data,
            imagej=True,
            resolution=(1 / 0.25, 1 / 0.25),
            metadata={"axes": axes, "unit": "um", "spacing": 1.5, "finterval": 2.0},
        )
    elif name == "ome16":
        tifffile.imwrite(
            path,
            data,
            ome=True,
            metadata={"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
        )
    elif name == "big2d":
        tifffile.imwrite(path, data, bigtiff=True, metadata=None)
    else:  # plain pages without any description
        tifffile.imwrite(path, data, photometric="minisblack", metadata=None)
    return data, axes


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_model(tiny_unet(2, 4), tmp_path_factory.mktemp("model") / "tiny.keras")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder of stacks plus a truncated TIFF, a damaged compressed one and a text file."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    data = {name: write_stack(root, name, rng) for name in STACKS}
    whole = (root / "ij8.tif").read_bytes()
    (root / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    noise = rng.integers(0, 4000, (2, 200, 200), dtype=np.uint16)
    tifffile.imwrite(root / "zip.tif", noise, compression="zlib", photometric="minisblack")
    zipped = (root / "zip.tif").read_bytes()
    (root / "damaged.tif").write_bytes(zipped[: len(zipped) // 2])
    (root / "zip.tif").unlink()
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.tif").write_text("ignored")
    return root, data


@pytest.fixture(scope="module")
def batch_run(folder, model_file, tmp_path_factory):
    root, _ = folder
    out = tmp_path_factory.mktemp("out")
    events = []
    steps = iter_batch([root], out, model=model_file, probabilities=True)
    while True:
        try:
            events.append(next(steps))
        except StopIteration as stop:
            return out, events, stop.value


def test_folder_gives_labels_equal_to_segment(folder, batch_run, model_file):
    _, data = folder
    out, _, summary = batch_run
    unet = tiny_unet(2, 4)
    for name, (image, axes) in data.items():
        expected = segment(unet, image, axes=axes)
        labels = tifffile.imread(out / f"{name}_labels.tif")
        probs = read_probabilities(out / f"{name}_probabilities.tif")
        np.testing.assert_array_equal(labels, expected.labels)
        np.testing.assert_array_equal(probs, expected.probabilities)
        assert labels.dtype == np.uint8 and probs.dtype == np.float32
    assert summary.count("done") == len(data)


def test_bad_files_fail_in_one_line_and_the_rest_goes_on(batch_run):
    out, _, summary = batch_run
    failed = {r.input.rsplit("/", 1)[-1]: r.message for r in summary.files if r.status == "failed"}
    assert set(failed) == {"truncated.tif", "damaged.tif", "notes.txt"}
    for name in ("truncated.tif", "damaged.tif"):
        assert "damaged" in failed[name] or "truncated" in failed[name]
    assert failed["notes.txt"].startswith("not a readable TIFF")
    assert all("\n" not in m and m for m in failed.values())
    assert not summary.ok
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_outputs_are_hyperstacks_with_the_inputs_calibration(batch_run):
    out, _, _ = batch_run
    with tifffile.TiffFile(out / "ij16_labels.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TZYX"
        info = tif.imagej_metadata
        assert info["unit"] == "um" and info["spacing"] == 1.5 and info["finterval"] == 2.0
        assert info["frames"] == 2 and info["slices"] == 3
        assert tif.pages[0].tags["XResolution"].value == (4, 1)
        assert "DateTime" not in tif.pages[0].tags  # outputs carry no time stamp
    with tifffile.TiffFile(out / "ome16_labels.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        assert tif.pages[0].tags["XResolution"].value == (2, 1)
    with tifffile.TiffFile(out / "ij8_probabilities.tif") as tif:  # classes as channels
        assert tif.is_imagej and tif.series[0].axes == "ZCYX"
        assert tif.series[0].shape == (4, 2, 64, 56) and tif.series[0].dtype == np.float32
        info = tif.imagej_metadata
        assert info["unit"] == "um" and info["channels"] == 2 and info["slices"] == 4
    with tifffile.TiffFile(out / "ij16_probabilities.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TZCYX"
        info = tif.imagej_metadata
        assert info["spacing"] == 1.5 and info["finterval"] == 2.0
        assert tif.pages[0].tags["XResolution"].value == (4, 1)
    assert read_probabilities(out / "ij16_probabilities.tif").shape[-1] == 2
    with tifffile.TiffFile(out / "plain32_labels.tif") as tif:
        assert tif.is_imagej and tif.series[0].shape == (3, 40, 50)


def test_run_record_traces_every_file(batch_run, model_file):
    out, _, summary = batch_run
    record = json.loads((out / RUN_RECORD).read_text())
    run = record["runs"][-1]
    assert run["model"]["sha256"] == file_sha256(model_file)
    assert (
        run["parameters"]["probabilities"] is True and run["status"] == "completed with failures"
    )
    files = {f["input"].rsplit("/", 1)[-1]: f for f in run["files"]}
    assert files["ij16.tif"]["shape"] == [2, 3, 48, 40] and files["ij16.tif"]["axes"] == "TZYX"
    assert files["ij16.tif"]["status"] == "done" and files["ij16.tif"]["seconds"] > 0
    assert files["ij16.tif"]["details"]["calibration"]["pixel_size"] == [0.25, 0.25]
    assert files["notes.txt"]["status"] == "failed"
    assert summary.record == out / RUN_RECORD


def test_progress_events(batch_run):
    _, events, summary = batch_run
    started = [e for e in events if isinstance(e, FileStarted)]
    finished = [e for e in events if isinstance(e, FileFinished)]
    assert len(finished) == len(summary.files) == 8 and len(started) == 5
    planes = [e for e in events if isinstance(e, PlaneProgress) and e.path.name == "ij16.tif"]
    assert [e.plane for e in planes if e.tiles_done == e.n_tiles] == list(range(6))
    assert planes[-1].fraction == 1.0
    fractions = [e.run_fraction for e in events if isinstance(e, PlaneProgress)]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] <= 1


def test_rerun_skips_and_overwrite_redoes_identically(folder, batch_run, model_file):
    root, _ = folder
    out, _, _ = batch_run
    before = {p.name: p.read_bytes() for p in out.glob("*.tif")}
    again = run_batch([root / "ij8.tif", root / "big2d.tif"], out, model=model_file)
    assert [r.status for r in again.files] == ["skipped", "skipped"]
    redo = run_batch([root / "ij8.tif"], out, model=model_file, probabilities=True, overwrite=True)
    assert redo.files[0].status == "done"
    assert {p.name: p.read_bytes() for p in out.glob("*.tif")} == before
    assert len(json.loads((out / RUN_RECORD).read_text())["runs"]) == 3
    other_model = save_model(tiny_unet(2, 4, seed=5), out.parent / "other.keras")
    other = run_batch([root / "ij8.tif"], out, model=other_model, probabilities=True)
    assert other.files[0].status == "failed" and "another model" in other.files[0].message
    changed = run_batch([root / "big2d.tif"], out, model=model_file, tile_size=92)
    assert changed.files[0].status == "failed" and "(tile_size)" in changed.files[0].message
    assert {p.name: p.read_bytes() for p in out.glob("*.tif")} == before


def test_missing_probabilities_are_added_to_finished_labels(folder, model_file, tmp_path):
    root, data = folder
    run_batch([root / "ij8.tif"], tmp_path, model=model_file)
    labels = (tmp_path / "ij8_labels.tif").read_bytes()
    summary = run_batch([root / "ij8.tif"], tmp_path, model=model_file, probabilities=True)
    assert summary.files[0].status == "done"
    assert (tmp_path / "ij8_labels.tif").read_bytes() == labels
    probs = read_probabilities(tmp_path / "ij8_probabilities.tif")
    expected = segment(tiny_unet(2, 4), data["ij8"][0], axes="ZYX").probabilities
    np.testing.assert_array_equal(probs, expected)


@pytest.mark.parametrize(
    "normalize", ["auto", "none", PercentileNormalizer(per="stack", low=2, high=98)]
)
def test_streamed_planes_equal_whole_planes(folder, model_file, tmp_path, normalize):
    """Tile rows read and written one by one give the very same bytes as whole planes."""
    root, _ = folder
    unet = tiny_unet(2, 4)
    if isinstance(normalize, PercentileNormalizer):
        from dataclasses import replace

        unet = type(unet)(
            unet.keras_model, replace(unet.metadata, normalization=normalize.to_dict())
        )
        normalize = "auto"
    files = [root / "ij16.tif", root / "plain32.tif"]
    options = dict(model=unet, normalize=normalize, probabilities=True, tile_size=60)
    whole = run_batch(files, tmp_path / "whole", **options)
    streamed = run_batch(files, tmp_path / "streamed", max_plane_bytes=1, **options)
    assert [f.details["streamed"] for f in streamed.files] == [True, True]
    assert [f.details["streamed"] for f in whole.files] == [False, False]
    assert streamed.files[0].details["tiles_per_plane"] > 1
    for name in ("ij16_labels.tif", "ij16_probabilities.tif", "plain32_probabilities.tif"):
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "streamed" / name
        ).read_bytes()


def test_stop_event_ends_after_the_current_plane(folder, model_file, tmp_path):
    root, _ = folder
    stop = threading.Event()
    steps = iter_batch(
        [root / "ij16.tif", root / "ij8.tif"], tmp_path, model=model_file, stop=stop
    )
    seen = []
    while True:
        try:
            event = next(steps)
        except StopIteration as done:
            summary = done.value
            break
        seen.append(event)
        if isinstance(event, PlaneProgress) and event.plane == 1 and event.tiles_done == 1:
            stop.set()
    completed = [
        e.plane for e in seen if isinstance(e, PlaneProgress) and e.tiles_done == e.n_tiles
    ]
    assert completed == [0, 1]
    assert summary.cancelled and [f.status for f in summary.files] == ["cancelled"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_RECORD]
    record = json.loads((tmp_path / RUN_RECORD).read_text())
    assert record["runs"][-1]["status"] == "cancelled"


def test_closing_the_generator_mid_plane_leaves_nothing(folder, model_file, tmp_path):
    root, _ = folder
    steps = iter_batch([root / "big2d.tif"], tmp_path, model=model_file, tile_size=60)
    for event in steps:
        if isinstance(event, PlaneProgress):
            break
    steps.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_RECORD]


def test_huge_outputs_become_bigtiff(folder, model_file, tmp_path, monkeypatch):
    from napari_tiled_unet.batch import tiffout as _tiffout

    root, data = folder
    monkeypatch.setattr(_tiffout, "BIGTIFF_THRESHOLD", 1000)
    run_batch([root / "ij16.tif"], tmp_path, model=model_file, probabilities=True)
    expected = segment(tiny_unet(2, 4), data["ij16"][0], axes="TZYX")
    with tifffile.TiffFile(tmp_path / "ij16_labels.tif") as tif:
        assert tif.is_bigtiff and tif.is_ome and tif.series[0].axes == "TZYX"
        np.testing.assert_array_equal(tif.asarray(), expected.labels)
        assert 'PhysicalSizeX="0.25"' in tif.ome_metadata
    with tifffile.TiffFile(tmp_path / "ij16_probabilities.tif") as tif:
        assert tif.is_bigtiff and tif.series[0].axes == "TZYXC"  # too big for ImageJ
    probabilities = read_probabilities(tmp_path / "ij16_probabilities.tif")
    np.testing.assert_array_equal(probabilities, expected.probabilities)


def test_axes_override_float16_and_channel_errors(folder, model_file, tmp_path):
    root, data = folder
    summary = run_batch(
        [root / "plain32.tif"],
        tmp_path,
        model=model_file,
        axes="TYX",
        probabilities=True,
        probability_dtype="float16",
    )
    with tifffile.TiffFile(tmp_path / "plain32_labels.tif") as tif:
        assert tif.series[0].axes == "TYX"
    probs = read_probabilities(tmp_path / "plain32_probabilities.tif")
    expected = segment(tiny_unet(2, 4), data["plain32"][0], axes="ZYX").probabilities
    assert probs.dtype == np.float16
    np.testing.assert_array_equal(probs, expected.astype(np.float16))
    assert summary.ok
    two = tiny_unet(2, 4, input_channels=2)
    failed = run_batch([root / "ij8.tif"], tmp_path / "two", model=two).files[0]
    assert failed.status == "failed" and "model expects 2" in failed.message
    wrong = run_batch([root / "ij8.tif"], tmp_path / "ax", model=model_file, axes="YX").files[0]
    assert wrong.status == "failed" and "name 2 dimensions" in wrong.message


def test_expand_inputs(tmp_path):
    for name in ("b.tif", "a.TIFF", "c.txt", ".d.tif"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.tif").write_text("x")
    (tmp_path / "a_labels.tif").write_text("x")
    (tmp_path / RUN_RECORD).write_text("{}")
    files, problems = expand_inputs([tmp_path], exclude=tmp_path.resolve())
    # a_labels.tif is an input: no run record says that it was made here
    assert [p.name for p in files] == ["a.TIFF", "a_labels.tif", "b.tif", "c.txt"]
    assert problems == []
    made = {"status": "done", "input": "a.TIFF", "outputs": [str(tmp_path / "a_labels.tif")]}
    runs = {"format": "napari-tiled-unet run record", "runs": [{"files": [made]}]}
    (tmp_path / RUN_RECORD).write_text(json.dumps(runs))
    files, problems = expand_inputs([tmp_path], exclude=tmp_path.resolve())
    assert [p.name for p in files] == ["a.TIFF", "b.tif", "c.txt"] and problems == []
    files, problems = expand_inputs(
        [str(tmp_path / "**" / "*.tif"), tmp_path / "b.tif", tmp_path / "nope.tif"]
    )
    assert [p.name for p in files] == ["a_labels.tif", "b.tif", "e.tif"]
    assert problems == [f"{tmp_path / 'nope.tif'}: no such file or folder"]
    assert expand_inputs([str(tmp_path / "*.png")])[1][0].endswith("no file matches this pattern")


def test_inputs_that_name_nothing_stop_before_any_work(tmp_path, model_file):
    with pytest.raises(ValueError, match="no such file"):
        run_batch([tmp_path / "missing.tif"], tmp_path / "out", model=model_file)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="probability_dtype"):
        run_batch([tmp_path], tmp_path / "out", model=model_file, probability_dtype="int8")


@pytest.mark.parametrize(
    "module, banned",
    [
        (
            "napari_tiled_unet.batch.run",
            ("tensorflow", "keras", "napari", "qtpy", "PyQt5", "PyQt6"),
        ),
        ("napari_tiled_unet.batch.lazy", ("tensorflow", "keras", "napari", "qtpy", "dask")),
        ("napari_tiled_unet.batch.cluster", ("tensorflow", "keras", "napari", "qtpy")),
        ("napari_tiled_unet.core.predict", ("dask", "zarr", "distributed", "tifffile", "tqdm")),
    ],
)
def test_rings_import_lightly(module, banned):
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in {banned!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inputs_with_the_same_output_names_are_not_mixed_up(folder, model_file, tmp_path):
    root, _ = folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "ij8.tiff").write_bytes((root / "ij16.tif").read_bytes())
    summary = run_batch([root / "ij8.tif", other / "ij8.tiff"], tmp_path / "out", model=model_file)
    assert [f.status for f in summary.files] == ["done", "failed"]
    assert "same output names as" in summary.files[1].message
    assert tifffile.imread(tmp_path / "out" / "ij8_labels.tif").shape == (4, 64, 56)
