"""Fixed-width float32 TSV formatter: exact layout, exact float32 round trip, block independence."""

import io

import numpy as np
import pytest

import metricbench.eval.float_tsv as float_tsv
from metricbench.eval.float_tsv import FIELD_WIDTH, format_float32_rows, write_float32_tsv


def _text(matrix):
    return format_float32_rows(np.asarray(matrix, dtype=np.float32)).tobytes().decode("ascii")


def test_layout_is_fixed_width_scientific_with_tabs_and_newlines():
    values = [[0.5, -1.0, 0.0, -0.0], [1e-45, 3.4028235e38, 123456789.0, -0.1]]
    assert _text(values) == (
        "+5.00000000e-01\t-1.00000000e+00\t+0.00000000e+00\t-0.00000000e+00\n"
        "+1.40129846e-45\t+3.40282347e+38\t+1.23456792e+08\t-1.00000001e-01\n"
    )
    assert len(_text(values)) == 8 * FIELD_WIDTH


@pytest.mark.parametrize("value", [9.9999999e8, 1e9, 1e-38, 1.1754942e-38, 9.999999e-1, 1.0, 10.0, 99999.99])
def test_powers_of_ten_and_rounding_carries_get_the_right_exponent(value):
    x = np.float32(value)
    text = _text([[x]])
    assert np.float32(float(text)) == x
    assert 1 <= int(text[1]) <= 9  # a normalised leading digit


def test_every_float32_bit_pattern_sample_round_trips_exactly():
    bits = np.random.default_rng(1).integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    parsed = np.array([float(field) for field in _text(values.reshape(-1, 1)).split()], dtype=np.float32)
    np.testing.assert_array_equal(parsed.view(np.uint32), values.view(np.uint32))  # -0.0 and subnormals too


def test_numpy_reads_back_the_same_matrix():
    x = (np.random.default_rng(0).standard_normal((40, 7)) * 10.0 ** np.arange(-3, 4)).astype(np.float32)
    loaded = np.loadtxt(io.StringIO(_text(x)), delimiter="\t", dtype=np.float32, ndmin=2)
    np.testing.assert_array_equal(loaded, x)


def test_many_blocks_give_the_same_text_as_one(monkeypatch):
    x = np.random.default_rng(2).standard_normal((50, 6)).astype(np.float32)
    one = io.BytesIO()
    write_float32_tsv(one, x)
    monkeypatch.setattr(float_tsv, "_VALUES_PER_BLOCK", 13)  # 2 rows per block
    many = io.BytesIO()
    write_float32_tsv(many, x)
    assert many.getvalue() == one.getvalue() == _text(x).encode()
    monkeypatch.setattr(float_tsv, "_VALUES_PER_BLOCK", 1)  # rows wider than a block: one row each
    single = io.BytesIO()
    write_float32_tsv(single, x)
    assert single.getvalue() == one.getvalue()
