"""The one output policy every entry point takes (widget, Batch, command line, demo)."""

import pytest

from napari_tiled_unet.batch.events import BatchOptions
from napari_tiled_unet.batch.settings import SEGMENT_DEFAULTS
from napari_tiled_unet.core.options import (
    DEFAULT_MIN_SIZE,
    DEFAULT_OUTPUT,
    check_output,
    output_kind,
)


@pytest.mark.parametrize(
    "n_classes, requested, kind",
    [
        (3, "auto", "instances"),  # background, interior, border
        (2, "auto", "classes"),
        (4, "auto", "classes"),
        (2, "instances", "instances"),
        (3, "classes", "classes"),
    ],
)
def test_output_kind_follows_the_border_class(n_classes, requested, kind):
    assert output_kind(n_classes, requested) == kind


def test_the_defaults_are_shared():
    assert (DEFAULT_OUTPUT, DEFAULT_MIN_SIZE) == ("auto", 20)
    options = BatchOptions()
    assert (options.output, options.min_size) == (DEFAULT_OUTPUT, DEFAULT_MIN_SIZE)
    assert options.instances_for(3) and not options.instances_for(2)
    assert (SEGMENT_DEFAULTS["output"], SEGMENT_DEFAULTS["min_size"]) == ("auto", 20)


@pytest.mark.parametrize(
    "requested, min_size, message",
    [("labels", 20, "output must be one of auto, classes, instances"), ("auto", -1, "0 or more")],
)
def test_bad_requests_are_one_line_errors(requested, min_size, message):
    with pytest.raises(ValueError, match=message) as error:
        check_output(requested, min_size)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=message):
        BatchOptions(output=requested, min_size=min_size)
