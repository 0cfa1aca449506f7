"""Exact streaming percentiles equal np.percentile bit for bit (what whole planes use)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_tiled_unet.core.percentile import (
    blocks_reducer,
    from_keys,
    percentile_stream,
    to_keys,
)

DTYPES = [
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
]


@st.composite
def samples(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rows = draw(st.integers(1, 300))
    channels = draw(st.integers(1, 3))
    bound = 60000.0 if dtype.itemsize == 2 else 2.0**100
    elements = (
        st.floats(allow_nan=False, width=8 * dtype.itemsize, min_value=-bound, max_value=bound)
        if dtype.kind == "f"
        else None
    )
    data = draw(hnp.arrays(dtype, (rows, channels), elements=elements))
    q = draw(st.lists(st.floats(0, 100), min_size=1, max_size=3))
    splits = sorted(draw(st.lists(st.integers(0, rows), max_size=4)))
    return data, q, np.split(data, splits)


@settings(max_examples=150, deadline=None)
@given(samples())
def test_streaming_percentiles_equal_numpy(case):
    data, q, parts = case
    got = percentile_stream(
        blocks_reducer(lambda: parts),
        dtype=data.dtype,
        channels=data.shape[1],
        count=data.shape[0],
        q=q,
    )
    want = np.percentile(data, q, axis=0)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_keys_keep_order_and_round_trip():
    values = np.array([-np.inf, -3.5, -0.0, 0.0, 1e-30, 2.0, np.inf], np.float32)
    keys = to_keys(values)
    assert np.all(np.diff(keys.astype(np.int64)) >= 0)
    np.testing.assert_array_equal(from_keys(keys, values.dtype), values)
    ints = np.array([-128, -1, 0, 5, 127], np.int8)
    assert np.all(np.diff(to_keys(ints).astype(int)) > 0)
    np.testing.assert_array_equal(from_keys(to_keys(ints), ints.dtype), ints)


def test_nan_channels_give_nan_like_numpy():
    data = np.array([[1.0, 2.0], [np.nan, 3.0], [4.0, 5.0]], np.float32)
    got = percentile_stream(
        blocks_reducer(lambda: [data]), dtype=data.dtype, channels=2, count=3, q=[50]
    )
    np.testing.assert_array_equal(got, np.percentile(data, [50], axis=0))
