"""Four small pure-PyTorch segmentation nets, and the demo weights shipped with segbench.

Each ``ARCHS[arch](num_classes)`` maps a normalised float NCHW RGB batch to
NKhw logits; h and w may be smaller than the input (FCN, DeepLabV3 and PSPNet
return stride-8 logits, U-Net full resolution), and the caller resizes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from segbench.models.nets.deeplabv3 import build_deeplabv3
from segbench.models.nets.fcn import build_fcn
from segbench.models.nets.pspnet import build_pspnet
from segbench.models.nets.unet import build_unet

ARCHS: dict[str, Callable[[int], nn.Module]] = {
    "fcn": build_fcn,
    "unet": build_unet,
    "deeplabv3": build_deeplabv3,
    "pspnet": build_pspnet,
}

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# safetensors metadata values are strings; these keys hold JSON, the others plain text.
JSON_METADATA_KEYS = frozenset(
    {"num_classes", "class_names", "mean", "std", "train_seed", "train_images", "steps", "batch_size", "lr",
     "val_mIoU"}
)


def demo_weights_path(arch: str) -> Path:
    return WEIGHTS_DIR / f"{arch}_demo.safetensors"


def demo_metadata(arch: str) -> dict[str, Any]:
    """The parsed metadata of ``arch``'s shipped weights (num_classes, ...), read without the weights."""
    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    path = demo_weights_path(arch)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run scripts/train_demo_models.py --arch {arch} to create it")
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    return {k: json.loads(v) if k in JSON_METADATA_KEYS else v for k, v in raw.items()}


def load_demo_weights(arch: str) -> tuple[nn.Module, dict[str, Any]]:
    """The net ``arch`` in eval mode with its shipped weights, and the parsed metadata.

    The metadata also holds the file's ``path`` and ``sha256``, for provenance.
    """
    meta = demo_metadata(arch)
    path = demo_weights_path(arch)
    meta |= {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    net = ARCHS[arch](meta["num_classes"])
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.eval(), meta
