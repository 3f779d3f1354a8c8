"""Train the demo nets on synthetic data; write segbench/models/weights/<arch>_demo.safetensors.

Deterministic: fixed seeds, a fixed data order, deterministic algorithms and
one CPU thread (a thread count changes the order of floating-point sums, and
one thread is also the fastest on a shared 2-core machine). The training data
(seed 1000) differ from the evaluation default (seed 0), on which each model's
validation mIoU is printed.

    python scripts/train_demo_models.py                 # all four, default steps
    python scripts/train_demo_models.py --arch unet --steps 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from segbench.data.synthetic import GENERATOR_VERSION, SyntheticDataset
from segbench.models.nets import ARCHS, JSON_METADATA_KEYS, demo_weights_path

MEAN = [123.675, 116.28, 103.53]  # RGB, pixel units, as mmseg
STD = [58.395, 57.12, 57.375]
TRAIN_SEED = 1000
TRAIN_IMAGES = 4000
VAL_SEED = 0
VAL_IMAGES = 32
BATCH_SIZE = 16
LR = 2e-3
DEFAULT_STEPS = {"fcn": 3000, "unet": 550, "deeplabv3": 1800, "pspnet": 1800}
BOUNDARY_RADIUS = 2  # pixels within this (chessboard) distance of a label change count as boundary


def make_pool(seed: int, num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a synthetic dataset: uint8 N3HW RGB and int64 NHW labels."""
    samples = [SyntheticDataset(num_images=num_images, seed=seed).load(i) for i in range(num_images)]
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.stack([s.label for s in samples]))
    return images, labels


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images.float() - mean) / std


def batch_indices(num_images: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``steps`` batches drawn epoch by epoch from seeded permutations."""
    needed = steps * BATCH_SIZE
    order = torch.cat([torch.randperm(num_images, generator=generator)
                       for _ in range(-(-needed // num_images))])
    return list(order[:needed].view(steps, BATCH_SIZE))


def flip(images: torch.Tensor, labels: torch.Tensor,
         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal and vertical flips of the whole batch (the shape classes are symmetric)."""
    for dim in (-1, -2):
        if torch.rand((), generator=generator) < 0.5:
            images, labels = images.flip(dim), labels.flip(dim)
    return images, labels


def train(arch: str, pool: tuple[torch.Tensor, torch.Tensor], num_classes: int, steps: int) -> nn.Module:
    torch.manual_seed(TRAIN_SEED)
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    net = ARCHS[arch](num_classes).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / steps) ** 0.9)
    images, labels = pool
    for step, idx in enumerate(batch_indices(len(images), steps, generator)):
        x, y = flip(images[idx], labels[idx], generator)
        logits = net(normalise(x))
        logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, y, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  {arch} step {step:5d}/{steps} loss {loss.item():.4f}", flush=True)
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    logits = net(normalise(images))
    logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return logits.argmax(1)


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: label, columns: prediction; pixels labelled outside [0, K) (ignore) are left out."""
    keep = label < num_classes
    flat = label[keep] * num_classes + pred[keep]
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def boundary_band(label: np.ndarray) -> np.ndarray:
    """Pixels with a different label value (ignore included) within BOUNDARY_RADIUS, per image."""
    size = (1, 2 * BOUNDARY_RADIUS + 1, 2 * BOUNDARY_RADIUS + 1)
    return scipy.ndimage.maximum_filter(label, size) != scipy.ndimage.minimum_filter(label, size)


def evaluate(net: nn.Module, num_classes: int) -> dict[str, Any]:
    images, labels = make_pool(VAL_SEED, VAL_IMAGES)
    pred, label = predict(net, images).numpy(), labels.numpy()
    conf = confusion_matrix(pred, label, num_classes)
    iou = np.diag(conf) / (conf.sum(0) + conf.sum(1) - np.diag(conf))
    valid = label != 255
    band = boundary_band(label) & valid
    correct = pred == label
    return {
        "mIoU": float(np.nanmean(iou)),
        "aAcc": float(np.trace(conf) / conf.sum()),
        "boundary_acc": float(correct[band].mean()),
        "interior_acc": float(correct[valid & ~band].mean()),
        "IoU": [round(float(v), 4) for v in iou],
    }


def metadata(arch: str, steps: int, dataset: SyntheticDataset, val: dict[str, Any]) -> dict[str, str]:
    info = dataset.info
    meta = {
        "arch": arch,
        "num_classes": info.num_classes,
        "class_names": info.class_names,
        "mean": MEAN,
        "std": STD,
        "dataset": "synthetic",
        "train_seed": TRAIN_SEED,
        "train_images": TRAIN_IMAGES,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "val_mIoU": round(val["mIoU"], 4),
        "generator_version": GENERATOR_VERSION,
        "description": (
            f"segbench demo weights for the builtin {arch} net, written by scripts/train_demo_models.py: "
            f"Adam, poly lr decay, cross-entropy ignoring 255, random flips, {TRAIN_IMAGES} images of "
            f"SyntheticDataset(seed={TRAIN_SEED}, 64x128); val_mIoU on SyntheticDataset(seed={VAL_SEED}, "
            f"{VAL_IMAGES} images). Inputs: RGB, (pixel - mean) / std. For demos and tests only."
        ),
    }
    return {k: json.dumps(v) if k in JSON_METADATA_KEYS else str(v) for k, v in meta.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), action="append", help="train only this arch (repeatable)")
    parser.add_argument("--steps", type=int, help="training steps (default: per arch, a few minutes each)")
    parser.add_argument("--out", type=Path, help="output folder (default: segbench/models/weights)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    dataset = SyntheticDataset(num_images=TRAIN_IMAGES, seed=TRAIN_SEED)
    num_classes = dataset.info.num_classes
    start = time.perf_counter()
    pool = make_pool(TRAIN_SEED, TRAIN_IMAGES)
    print(f"generated {TRAIN_IMAGES} training images in {time.perf_counter() - start:.1f} s", flush=True)
    for arch in args.arch or list(ARCHS):
        steps = args.steps or DEFAULT_STEPS[arch]
        start = time.perf_counter()
        net = train(arch, pool, num_classes, steps)
        minutes = (time.perf_counter() - start) / 60
        val = evaluate(net, num_classes)
        path = args.out / f"{arch}_demo.safetensors" if args.out else demo_weights_path(arch)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(path), metadata=metadata(arch, steps, dataset, val))
        params = sum(p.numel() for p in net.parameters())
        size_mb = path.stat().st_size / 1e6
        print(f"{arch}: {params} parameters, {steps} steps in {minutes:.1f} min, {size_mb:.2f} MB; "
              f"val mIoU {val['mIoU']:.4f} aAcc {val['aAcc']:.4f} "
              f"boundary acc {val['boundary_acc']:.4f} interior acc {val['interior_acc']:.4f} IoU {val['IoU']}",
              flush=True)


if __name__ == "__main__":
    main()
