"""Tests for make_dataset, the single validation point of every loader."""

import numpy as np
import pytest

from metricbench.data import Dataset, make_dataset
from metricbench.errors import InputTypeError


def _x(n: int = 6, f: int = 3) -> np.ndarray:
    return np.arange(n * f, dtype=np.float64).reshape(n, f)


def test_vectors_are_float32_c_contiguous():
    x = np.asfortranarray(_x())
    data = make_dataset("toy", x, [0, 1, 0, 1, 0, 1])
    assert isinstance(data, Dataset)
    assert data.x.dtype == np.float32 and data.x.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(data.x, x.astype(np.float32))
    assert data.y.dtype == np.int64
    assert data.kind == "vector" and len(data) == 6 and data.num_classes == 2


def test_three_dimensional_images_get_a_channel_axis():
    data = make_dataset("img", np.zeros((4, 5, 7), dtype=np.uint8), [0, 1, 1, 0])
    assert data.x.shape == (4, 1, 5, 7)
    assert data.kind == "image"


def test_string_labels_are_sorted_and_named():
    labels = ["dog", "cat", "eel", "cat", "dog", "eel"]
    data = make_dataset("pets", _x(), labels)
    assert data.class_names == ("cat", "dog", "eel")
    np.testing.assert_array_equal(data.y, [1, 0, 2, 0, 1, 2])
    assert [data.class_names[i] for i in data.y] == labels


def test_numeric_labels_sort_numerically():
    data = make_dataset("num", _x(5), np.array([10, 2, 2, 10, 1]))
    assert data.class_names == ("1", "2", "10")
    np.testing.assert_array_equal(data.y, [2, 1, 1, 2, 0])


def test_integer_strings_sort_numerically():
    data = make_dataset("folders", _x(4), ["10", "2", "9", "2"])
    assert data.class_names == ("2", "9", "10")
    np.testing.assert_array_equal(data.y, [2, 0, 1, 0])


def test_integral_float_labels_are_named_as_ints():
    data = make_dataset("csv", _x(4), np.array([3.0, 1.0, 3.0, 1.0]))
    assert data.class_names == ("1", "3")


def test_class_names_keep_only_present_classes():
    data = make_dataset("npz", _x(4), np.array([0, 2, 2, 0]), class_names=["a", "b", "c"])
    assert data.class_names == ("a", "c")
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])


def test_bytes_class_names_are_decoded():
    data = make_dataset("npz", _x(4), np.array([0, 1, 1, 0]), class_names=np.array([b"cat", b"dog"]))
    assert data.class_names == ("cat", "dog")


def test_class_names_out_of_range():
    with pytest.raises(ValueError, match=r"y must be in \[0, 2\) \(len\(class_names\)\), got min 0 and max 2"):
        make_dataset("npz", _x(3), np.array([0, 1, 2]), class_names=["a", "b"])


def test_class_names_need_integer_ids():
    with pytest.raises(InputTypeError, match="integer class ids"):
        make_dataset("npz", _x(2), np.array(["a", "b"]), class_names=["a", "b"])


def test_duplicate_class_names():
    with pytest.raises(ValueError, match="class_names must be unique, got 'a' more than once"):
        make_dataset("npz", _x(2), np.array([0, 1]), class_names=["a", "a"])


def test_length_mismatch_message():
    with pytest.raises(ValueError) as info:
        make_dataset("bad", np.zeros((100, 4)), np.zeros(99, dtype=int))
    assert str(info.value) == "x and y must have the same number of rows, got x (100, 4) and y (99,)"


def test_non_finite_values_are_counted_with_first_row():
    x = _x()
    x[3, 1] = np.nan
    x[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"got 2 NaN/Inf values .*first in row 3"):
        make_dataset("bad", x, [0, 1, 0, 1, 0, 1])


def test_values_overflowing_float32_are_rejected():
    x = _x()
    x[4, 2] = 1e39
    with pytest.raises(ValueError, match="first in row 4"):
        make_dataset("bad", x, [0, 1, 0, 1, 0, 1])


def test_single_class_is_rejected():
    with pytest.raises(ValueError, match=r"single class \('7'\); metric learning needs at least 2"):
        make_dataset("one", _x(3), [7, 7, 7])


def test_empty_dataset_is_rejected():
    with pytest.raises(ValueError, match="at least 1 sample"):
        make_dataset("empty", np.zeros((0, 3)), np.zeros(0, dtype=int))


@pytest.mark.parametrize("shape", [(6,), (6, 1, 2, 3, 4)])
def test_bad_x_rank(shape):
    with pytest.raises(ValueError, match=r"x must be 2-D \(N, F\) or 4-D"):
        make_dataset("bad", np.zeros(shape), np.arange(6) % 2)


def test_non_numeric_x():
    with pytest.raises(InputTypeError, match="x must be numeric"):
        make_dataset("bad", np.array([["a"], ["b"]]), [0, 1])


def test_y_must_be_one_dimensional():
    with pytest.raises(ValueError, match=r"y must have shape \(N,\), got \(6, 1\)"):
        make_dataset("bad", _x(), np.zeros((6, 1), dtype=int))


def test_mixed_label_types():
    with pytest.raises(InputTypeError, match="mutually comparable"):
        make_dataset("bad", _x(2), np.array([1, "a"], dtype=object))


def test_nan_labels():
    with pytest.raises(ValueError, match="y must not contain NaN"):
        make_dataset("bad", _x(3), np.array([0.0, np.nan, 1.0]))


def test_bytes_class_names_that_are_not_utf8_are_escaped():
    data = make_dataset("npz", _x(2), np.array([0, 1]), class_names=np.array([b"caf\xe9", b"dog"]))
    assert data.class_names == ("caf\\xe9", "dog")


def test_messages_use_the_callers_names():
    x = _x()
    x[2, 0] = np.nan
    with pytest.raises(ValueError, match="^--embeddings must be finite, got 1 NaN/Inf"):
        make_dataset("e", x, [0, 1] * 3, names=("--embeddings", "--labels"))
    with pytest.raises(ValueError, match=r"^--embeddings and --labels must have the same number of rows, got "
                                         r"--embeddings \(6, 3\) and --labels \(5,\)$"):
        make_dataset("e", _x(), [0, 1, 0, 1, 0], names=("--embeddings", "--labels"))
    with pytest.raises(TypeError, match="names must be a pair of str"):
        make_dataset("e", _x(), [0, 1] * 3, names=("x",))


def test_fingerprint_depends_on_values_shape_labels_and_names_only():
    x, y = _x(), [0, 1, 0, 1, 0, 1]
    base = make_dataset("a", x, y).fingerprint
    assert len(base) == 32 and int(base, 16) >= 0
    assert make_dataset("other name", x.copy(), list(y)).fingerprint == base
    changed = x.copy()
    changed[5, 2] += 1
    assert make_dataset("a", changed, y).fingerprint != base
    assert make_dataset("a", x.reshape(6, 3, 1, 1), y).fingerprint != base  # same bytes, other shape
    assert make_dataset("a", x, [1, 0, 1, 0, 1, 0]).fingerprint != base
    assert make_dataset("a", x, ["p", "q"] * 3).fingerprint != make_dataset("a", x, ["p", "r"] * 3).fingerprint
