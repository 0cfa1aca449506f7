"""The ``tune`` subcommand: times a model's tiles, caches them, and shows the new choice."""

import pytest

from napari_tiled_unet import save_model
from napari_tiled_unet.cli.main import main
from napari_tiled_unet.core.cache import CACHE_ENV_VAR, cache_dir
from napari_tiled_unet.core.timings import cached_timings
from tests.conftest import cli_help, tiny_unet


def test_tune_help_imports_nothing_heavy():
    text, heavy = cli_help("tune")
    assert "--precision" in text and "example:" in text
    assert heavy == "[]"


def test_tune_prints_the_timings_and_caches_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    unet = tiny_unet(2, 4)
    path = save_model(unet, tmp_path / "tiny.keras")
    assert main(["tune", "--model", str(path), "--memory-budget", "20MB"]) == 0
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "tile now" in out and "machine:" in out
    timings = cached_timings(unet.spec)
    assert timings is not None and len(timings.sizes) >= 2
    assert max(timings.activation) <= 20 * 10**6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--precision", "int8"], "invalid choice"),
        (["--memory-budget", "lots"], "memory"),
    ],
)
def test_tune_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(["tune", *argv])
    assert message in capsys.readouterr().err


def test_tune_of_a_missing_model_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert main(["tune", "--model", str(tmp_path / "nothing.keras")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing.keras" in err[0]
    assert not list(cache_dir("tiles").glob("*.json"))
