import pytest

from napari_tiled_unet.core.model import geometry as g


def test_paper_sizes():
    assert g.output_size(572, 4) == 388
    assert g.halo(4) == 92
    assert g.alignment(4) == 16
    assert g.smallest_valid_input_size(4) == 188


def test_valid_sizes_are_an_arithmetic_progression():
    sizes = g.valid_input_sizes(4, maximum=1300)
    assert 572 in sizes and 1212 in sizes
    assert all(b - a == 16 for a, b in zip(sizes, sizes[1:]))
    for size in range(150, 700):
        assert g.is_valid_input_size(size, 4) == (size in sizes)
        out = g.output_size(size, 4)
        if out is not None:
            assert size - out == 2 * 92


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4, 5])
def test_halo_is_constant_for_each_depth(depth):
    sizes = g.valid_input_sizes(depth, maximum=900)
    halos = {(s - g.output_size(s, depth)) // 2 for s in sizes}
    assert halos == {g.halo(depth)}


def test_nearest_valid_input_size_rounds_and_warns():
    assert g.nearest_valid_input_size(572) == 572
    assert g.nearest_valid_input_size(579) == 572
    assert g.nearest_valid_input_size(581) == 588
    assert g.nearest_valid_input_size(10) == 188
    with pytest.warns(UserWarning, match="580.*588"):
        g.nearest_valid_input_size(580, warn=True)


def test_smallest_input_for_output():
    assert g.smallest_input_for_output(388) == 572
    assert g.smallest_input_for_output(389) == 588
    assert g.output_size(g.smallest_input_for_output(1024)) >= 1024


def test_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        g.output_size(572, -1)
