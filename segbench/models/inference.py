"""Applying a torch segmentation net to a batch: whole or sliding window, flip and multi-scale TTA.

Conventions follow mmsegmentation's EncoderDecoder and SegTTAModel: logits are
resized bilinearly (align_corners=False) to the input size; overlapping
sliding-window logits are averaged; test-time augmentation averages the
softmax of each augmented view at the original size.

A net may return its logits as a tensor, or inside what frameworks return
(:func:`logits_of`): a dict or a transformers output, a tuple or a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segbench.config import InferenceConfig
from segbench.errors import UserError

LOGITS_KEYS = ("logits", "out")
"""Where a dict or a transformers-like output holds the logits (torchvision's segmentation models: ``out``)."""


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _described(value: Any) -> str:
    """What a net returned, in words: its type, a dict's keys, a tensor's shape."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {list(value)}"
    if isinstance(value, (tuple, list)) and value:
        return f"a {type(value).__name__} whose first element is {_described(value[0])}"
    return f"a {type(value).__name__}"


def logits_of(output: Any) -> torch.Tensor:
    """The N x K x H x W logits in what a net returned: the tensor itself; the ``logits`` (or ``out``) entry
    of a dict or a transformers-like output (an attribute of other objects); a tuple's or list's first
    element. Anything else is a UserError saying what was returned."""
    if isinstance(output, Mapping):
        found = next((output[key] for key in LOGITS_KEYS if key in output), None)
    elif isinstance(output, (tuple, list)):
        found = output[0] if output else None
    elif isinstance(output, torch.Tensor):
        found = output
    else:
        found = next((getattr(output, key) for key in LOGITS_KEYS if hasattr(output, key)), None)
    if isinstance(found, torch.Tensor) and found.dim() == 4:
        return found
    raise UserError(f"the model returned {_described(output)}; expected a tensor N x K x H x W, or a dict or "
                    f"output with `logits` or `out`, or a tuple or list whose first element is the logits")


def whole_logits(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return _resize(logits_of(net(batch)), batch.shape[-2:])


def _window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window origins as mmseg's slide_inference: a regular grid, the last window flush with the edge."""
    count = max(length - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, length) - crop, 0) for i in range(count)]


def slide_logits(net: nn.Module, batch: torch.Tensor, crop_size: tuple[int, int],
                 stride: tuple[int, int]) -> torch.Tensor:
    height, width = batch.shape[-2:]
    total = None
    count = torch.zeros((1, 1, height, width), device=batch.device)
    for top in _window_starts(height, crop_size[0], stride[0]):
        for left in _window_starts(width, crop_size[1], stride[1]):
            bottom, right = min(top + crop_size[0], height), min(left + crop_size[1], width)
            logits = whole_logits(net, batch[..., top:bottom, left:right])
            if total is None:
                total = batch.new_zeros((batch.shape[0], logits.shape[1], height, width))
            total[..., top:bottom, left:right] += logits
            count[..., top:bottom, left:right] += 1
    return total / count


def segment(net: nn.Module, batch: torch.Tensor, config: InferenceConfig) -> torch.Tensor:
    """Scores N x K x H x W at the batch's own size: logits without TTA, mean softmax with it."""
    def one_view(x: torch.Tensor) -> torch.Tensor:
        if config.mode == "slide":
            return slide_logits(net, x, config.crop_size, config.stride)
        return whole_logits(net, x)

    if config.scales == [1.0] and not config.flip:
        return one_view(batch)
    size = tuple(batch.shape[-2:])
    total = None
    for scale in config.scales:
        scaled = _resize(batch, (round(size[0] * scale), round(size[1] * scale)))
        for flip in ([False, True] if config.flip else [False]):
            view = scaled.flip(-1) if flip else scaled
            scores = one_view(view)
            scores = _resize(scores.flip(-1) if flip else scores, size).softmax(dim=1)
            total = scores if total is None else total + scores
    return total / (len(config.scales) * (2 if config.flip else 1))
