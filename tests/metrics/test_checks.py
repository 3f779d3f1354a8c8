"""validate_pair: each error, the "ignore" remapping, and agreement with a brute-force check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segbench.errors import DataError
from segbench.metrics.checks import validate_pair

K = 5


def test_valid_pair_returns_label_unchanged() -> None:
    label = torch.tensor([[0, 4, 255], [1, 2, 3]])
    pred = torch.tensor([[0, 4, 4], [1, 2, 3]])
    checked, remapped = validate_pair(pred, label, K, 255, "x")
    assert checked is label and remapped == 0


@pytest.mark.parametrize("ignore_index", [-1, 0, 7, 255])
def test_valid_pair_with_other_ignore_indices(ignore_index: int) -> None:
    label = torch.tensor([[0, 4, ignore_index], [ignore_index, 2, 3]])
    checked, remapped = validate_pair(torch.zeros_like(label), label, K, ignore_index, "x")
    assert checked is label and remapped == 0


def test_label_values_out_of_range() -> None:
    label = torch.tensor([[0, 7, 255], [9, 7, 1]])
    with pytest.raises(DataError) as error:
        validate_pair(torch.zeros_like(label), label, K, 255, "x")
    assert str(error.value) == ("image 'x': label values [7, 9] are outside [0, 5) "
                                "and not the ignore index 255")


def test_negative_label_values() -> None:
    label = torch.tensor([[0, -3, 1]])
    with pytest.raises(DataError, match=r"image 'y': label values \[-3\]"):
        validate_pair(torch.zeros_like(label), label, K, 255, "y")


@pytest.mark.parametrize("bad", [-1, 5, 200])
def test_prediction_values_out_of_range(bad: int) -> None:
    label = torch.tensor([[0, 1, 255]])
    pred = torch.tensor([[0, bad, 1]])
    with pytest.raises(DataError) as error:
        validate_pair(pred, label, K, 255, "p")
    assert str(error.value) == f"image 'p': prediction values [{bad}] are outside [0, 5)"


def test_prediction_at_ignore_pixel_is_still_checked() -> None:
    label = torch.tensor([[0, 255]])
    with pytest.raises(DataError, match=r"prediction values \[255\]"):
        validate_pair(torch.tensor([[0, 255]]), label, K, 255, "p")


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(DataError) as error:
        validate_pair(torch.zeros(4, 6, dtype=torch.int64), torch.zeros(4, 5, dtype=torch.int64),
                      K, 255, "s")
    assert str(error.value) == "image 's': prediction shape (4, 6) differs from label shape (4, 5)"


def test_float_prediction_is_refused() -> None:
    with pytest.raises(DataError, match="prediction dtype torch.float32 is not an integer type"):
        validate_pair(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.int64), K, 255, "f")


def test_many_offending_values_are_shortened() -> None:
    label = torch.arange(K, K + 30).reshape(5, 6)
    with pytest.raises(DataError, match=r"\[5, 6, 7, 8, 9, 10, 11, 12, 13, 14\] \(and 20 more\)"):
        validate_pair(torch.zeros_like(label), label, K, 255, "m")


def test_ignore_policy_remaps_and_counts() -> None:
    label = torch.tensor([[0, 7, 255], [9, 7, 1]], dtype=torch.uint8)
    before = label.clone()
    checked, remapped = validate_pair(torch.zeros_like(label), label, K, 255, "x",
                                      invalid_labels="ignore")
    assert remapped == 3
    assert checked.tolist() == [[0, 255, 255], [255, 255, 1]]
    assert torch.equal(label, before)  # the caller's tensor is left alone


def test_ignore_policy_with_negative_ignore_index_on_uint8() -> None:
    label = torch.tensor([[0, 200]], dtype=torch.uint8)
    checked, remapped = validate_pair(torch.zeros_like(label), label, K, -1, "x",
                                      invalid_labels="ignore")
    assert remapped == 1 and checked.tolist() == [[0, -1]]


def test_ignore_index_outside_the_label_dtype() -> None:
    """torch compares uint8 255 == -1 as true; the check must not."""
    label = torch.tensor([[0, 200, 255]], dtype=torch.uint8)
    with pytest.raises(DataError, match=r"label values \[200, 255\]"):
        validate_pair(torch.zeros_like(label), label, K, -1, "x")


def test_ignore_policy_does_not_excuse_predictions() -> None:
    with pytest.raises(DataError, match="prediction values"):
        validate_pair(torch.tensor([[9]]), torch.tensor([[0]]), K, 255, "x",
                      invalid_labels="ignore")


def test_unknown_policy() -> None:
    with pytest.raises(ValueError, match="invalid_labels"):
        validate_pair(torch.tensor([[0]]), torch.tensor([[0]]), K, 255, "x", invalid_labels="drop")


def test_empty_images_pass() -> None:
    empty = torch.zeros(0, 3, dtype=torch.int64)
    assert validate_pair(empty, empty, K, 255, "e") == (empty, 0)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([255, -1, 0]), hnp.arrays(np.int64, (3, 7), elements=st.integers(-2, 8)),
       st.sampled_from(["error", "ignore"]))
def test_agrees_with_brute_force(ignore_index: int, label_values: np.ndarray, policy: str) -> None:
    label = torch.from_numpy(label_values)
    pred = torch.zeros_like(label)
    invalid = sorted({int(v) for v in label_values.flat if not (0 <= v < K or v == ignore_index)})
    if invalid and policy == "error":
        with pytest.raises(DataError, match=rf"label values \[{', '.join(map(str, invalid))}\]"):
            validate_pair(pred, label, K, ignore_index, "h", policy)
        return
    checked, remapped = validate_pair(pred, label, K, ignore_index, "h", policy)
    bad = np.isin(label_values, invalid)
    assert remapped == np.count_nonzero(bad)
    assert checked.tolist() == np.where(bad, ignore_index, label_values).tolist()
