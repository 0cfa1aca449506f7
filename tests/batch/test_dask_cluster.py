"""The batch engine on a Dask LocalCluster of 2 worker processes (loopback): same bytes."""

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import save_model
from napari_tiled_unet.batch.results import read_probabilities
from napari_tiled_unet.batch.run import run_batch
from napari_tiled_unet.cli.main import main
from tests.conftest import tiny_unet


@pytest.fixture(scope="module")
def client():
    from napari_tiled_unet.batch.cluster import connect

    with connect(2, None) as client:
        yield client


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    model = save_model(tiny_unet(2, 4), root / "tiny.keras")
    rng = np.random.default_rng(0)
    (root / "in").mkdir()
    stack = (rng.random((2, 4, 90, 70)) * 4000).astype(np.uint16)
    tifffile.imwrite(root / "in" / "tz.tif", stack, imagej=True, metadata={"axes": "TZYX"})
    rgb_like = rng.random((5, 60, 64)).astype(np.float32)
    tifffile.imwrite(root / "in" / "plain.tif", rgb_like, photometric="minisblack", metadata=None)
    big = (rng.random((300, 260)) * 255).astype(np.uint8)
    tifffile.imwrite(root / "in" / "big.tif", big, compression="zlib")
    (root / "in" / "junk.tif").write_text("no")
    local = root / "local"
    run_batch([root / "in"], local, model=model, probabilities=True, tile_size=60)
    return root, model, local


def same_files(a, b):
    names = sorted(p.name for p in a.glob("*.tif"))
    assert names == sorted(p.name for p in b.glob("*.tif")) and names
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def test_two_workers_give_the_local_bytes(client, inputs, tmp_path):
    from napari_tiled_unet.batch import modelref

    root, model, local = inputs
    summary = run_batch(
        [root / "in"], tmp_path, model=model, probabilities=True, tile_size=60, client=client
    )
    assert [f.status for f in summary.files] == ["done", "failed", "done", "done"]
    assert same_files(local, tmp_path)
    loads = client.run(lambda: modelref.LOADS[0])
    assert len(loads) == 2 and set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1


def test_cli_on_an_existing_scheduler(client, inputs, tmp_path, capsys):
    root, model, local = inputs
    address = client.scheduler.address
    args = ["segment", str(root / "in"), "-o", str(tmp_path), "--model", str(model), "-q"]
    status = main([*args, "--probabilities", "--tile-size", "60", "--scheduler", address])
    assert status == 2  # junk.tif failed, the others are done
    assert same_files(local, tmp_path)
    assert "junk.tif" in capsys.readouterr().err


def test_a_huge_plane_in_chunks_on_the_cluster(client, inputs, tmp_path):
    """max_plane_bytes makes big.tif a 'huge' plane: output-aligned chunks as tasks."""
    root, model, local = inputs
    options = dict(model=model, probabilities=True, tile_size=60, max_plane_bytes=2**16)
    summary = run_batch([root / "in" / "big.tif"], tmp_path, client=client, **options)
    assert summary.files[0].details["streamed"]
    labels = tifffile.imread(tmp_path / "big_labels.tif")
    expected = tifffile.imread(local / "big_labels.tif")
    assert (labels == expected).mean() >= 0.9999
    np.testing.assert_allclose(
        read_probabilities(tmp_path / "big_probabilities.tif"),
        read_probabilities(local / "big_probabilities.tif"),
        atol=1e-5,
    )


def test_unreachable_scheduler_is_one_line(inputs, tmp_path, capsys):
    import dask

    root, model, _ = inputs
    args = ["segment", str(root / "in"), "-o", str(tmp_path), "--model", str(model)]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main([*args, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-tiled-unet: error: cannot reach") and "\n" not in err
