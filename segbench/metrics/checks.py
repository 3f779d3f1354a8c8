"""Validation of a (prediction, label) pair before any metric sees it."""

from __future__ import annotations

import torch
from torch import Tensor

from segbench.errors import DataError

INVALID_LABEL_POLICIES = ("error", "ignore")


def _values(values: Tensor) -> str:
    """The distinct values, sorted, at most ten of them."""
    distinct = torch.unique(values).tolist()
    if len(distinct) <= 10:
        return str(distinct)
    return f"{distinct[:10]} (and {len(distinct) - 10} more)"


def _check_integer(tensor: Tensor, what: str, image_id: str) -> None:
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise DataError(f"image {image_id!r}: {what} dtype {tensor.dtype} is not an integer type")


def validate_pair(pred: Tensor, label: Tensor, num_classes: int, ignore_index: int, image_id: str,
                  invalid_labels: str = "error") -> tuple[Tensor, int]:
    """Check shapes and values; return the label (invalid values remapped) and the remapped count.

    A label value neither in [0, K) nor the ignore index is an error, or with
    ``invalid_labels="ignore"`` is set to the ignore index (in a copy) and
    counted. A prediction value outside [0, K) is always an error. A valid
    pair costs a min/max pass over each tensor, plus two counting passes
    when the label has ignore pixels; the offending values are looked up only
    when there are some.
    """
    if invalid_labels not in INVALID_LABEL_POLICIES:
        raise ValueError(f"invalid_labels must be one of {INVALID_LABEL_POLICIES}, "
                         f"not {invalid_labels!r}")
    if pred.shape != label.shape:
        raise DataError(f"image {image_id!r}: prediction shape {tuple(pred.shape)} differs "
                        f"from label shape {tuple(label.shape)}")
    _check_integer(pred, "prediction", image_id)
    _check_integer(label, "label", image_id)
    dtype_range = torch.iinfo(label.dtype)
    if not dtype_range.min <= ignore_index <= dtype_range.max:
        label = label.long()  # torch would compare with the ignore index wrapped into the dtype
    if label.numel() == 0:
        return label, 0

    low, high = torch.aminmax(pred)
    if low < 0 or high >= num_classes:
        bad = pred[(pred < 0) | (pred >= num_classes)]
        raise DataError(f"image {image_id!r}: prediction values {_values(bad)} are outside "
                        f"[0, {num_classes})")

    low, high = torch.aminmax(label)
    if low >= 0 and high < num_classes:
        return label, 0
    if low >= 0 and high == ignore_index:  # the common case: valid values and ignore pixels
        above = torch.count_nonzero(label >= num_classes)
        if above == torch.count_nonzero(label == ignore_index):
            return label, 0

    invalid = ((label < 0) | (label >= num_classes)) & (label != ignore_index)
    if not invalid.any():
        return label, 0
    if invalid_labels == "error":
        raise DataError(f"image {image_id!r}: label values {_values(label[invalid])} are outside "
                        f"[0, {num_classes}) and not the ignore index {ignore_index}")
    return label.masked_fill(invalid, ignore_index), int(invalid.sum())
