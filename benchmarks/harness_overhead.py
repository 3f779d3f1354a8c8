"""What segbench's evaluation costs on top of the loop a user would write.

Data: ``--images`` synthetic scenes at ``--height`` x ``--width`` (512x1024 by
default), written once as PNG files (images/ and labels/), so that
``segbench run`` reads and decodes them as it would a real dataset (a
``folder`` dataset). ``--dataset synthetic`` uses the procedural generator
instead: it then draws every scene during the run, which costs more than the
forward pass of a small net on a CPU.

- segbench: ``segbench run`` in a subprocess, a built-in model with its demo
  weights, the accuracy group only, ``--batch-size`` and ``--workers`` as
  given. Images per second = images / the cell's ``eval_seconds`` (reading,
  decoding, preprocessing, forward, resize, argmax, label checks, metrics);
  also shown: images / the process's wall time, which adds Python's start,
  imports and writing the run folder.
- bare loop: the same net and weights in this process, on the same images
  already decoded, normalised and batched in memory: forward, bilinear resize
  of the logits to the image size when the net predicts at a lower
  resolution (as a user must, to compare with the labels), argmax. No warm-up
  in either.

The two are run alternately ``--repeats`` times; the figures are medians.
Overhead = bare images/s / segbench images/s - 1; target: at most 15 % on a
CPU, 10 % on a GPU.

With ``--save-predictions``, each repeat also runs segbench with
``save_predictions: true`` (palette PNGs written by the background writer);
its cost = eval seconds with saving / eval seconds without - 1; target: at
most 10 %.

    PYTHONPATH=. python benchmarks/harness_overhead.py [--arch deeplabv3] [--images 32] [--height 512]
        [--width 1024] [--batch-size 4] [--workers 2] [--device cpu] [--threads N] [--repeats 2]
        [--dataset folder|synthetic] [--save-predictions]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from segbench.images import write_label
from segbench.data.synthetic import SyntheticDataset
from segbench.environment import device_name, resolve_device
from segbench.models.nets import load_demo_weights


def write_folder_dataset(root: Path, images: int, height: int, width: int) -> None:
    data = SyntheticDataset(num_images=images, height=height, width=width)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(images):
        sample = data.load(i)
        Image.fromarray(sample.image).save(root / "images" / f"{sample.id}.png")
        write_label(root / "labels" / f"{sample.id}.png", sample.label.astype(np.uint8))


def suite(args: argparse.Namespace, data_root: Path, save_predictions: bool = False) -> dict:
    if args.dataset == "folder":
        dataset = {"name": "scenes", "type": "folder", "root": str(data_root), "num_classes": 6}
    else:
        dataset = {"name": "scenes", "type": "synthetic", "num_images": args.images,
                   "height": args.height, "width": args.width}
    return {"name": "overhead", "device": args.device, "batch_size": args.batch_size,
            "num_workers": args.workers, "datasets": [dataset],
            "models": [{"name": args.arch, "type": "builtin", "arch": args.arch}],
            "metrics": {"accuracy": {}, "boundary": None, "distance": None},
            "save_predictions": save_predictions}


def run_segbench(suite_file: Path, run_dir: Path, threads: int | None) -> tuple[float, float]:
    """(eval seconds of the cell, wall seconds of the process)."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "segbench", "run", str(suite_file), "--run-dir", str(run_dir),
                    "--no-resume"], check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    [cell] = (run_dir / "cells").iterdir()
    return json.loads((cell / "cell.json").read_text())["eval_seconds"], wall


def preload(args: argparse.Namespace, mean: list[float], std: list[float],
            device: torch.device) -> list[torch.Tensor]:
    """The images as a user would hold them: normalised float NCHW batches on the device."""
    data = SyntheticDataset(num_images=args.images, height=args.height, width=args.width)
    images = torch.from_numpy(np.stack([data.load(i).image for i in range(args.images)]))
    images = (images.permute(0, 3, 1, 2).float() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return [batch.to(device) for batch in images.split(args.batch_size)]


@torch.inference_mode()
def bare_loop(net: torch.nn.Module, batches: list[torch.Tensor], device: torch.device) -> float:
    """Seconds of forward + resize + argmax over the preloaded batches."""
    started = time.perf_counter()
    for batch in batches:
        logits = net(batch)
        if logits.shape[-2:] != batch.shape[-2:]:
            logits = F.interpolate(logits, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        prediction = logits.argmax(dim=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    del prediction
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    net, meta = load_demo_weights(args.arch)
    net = net.to(device).eval()
    batches = preload(args, meta["mean"], meta["std"], device)
    bare, harness, walls, saving = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.dataset == "folder":
            write_folder_dataset(tmp / "data", args.images, args.height, args.width)
        suite_file = tmp / "suite.yaml"
        suite_file.write_text(yaml.safe_dump(suite(args, tmp / "data")))
        saving_file = tmp / "saving.yaml"
        saving_file.write_text(yaml.safe_dump(suite(args, tmp / "data", save_predictions=True)))
        for repeat in range(args.repeats):
            bare.append(args.images / bare_loop(net, batches, device))
            seconds, wall = run_segbench(suite_file, tmp / f"run{repeat}", args.threads)
            harness.append(args.images / seconds)
            walls.append(args.images / wall)
            if args.save_predictions:
                saving.append(args.images / run_segbench(saving_file, tmp / f"saving{repeat}", args.threads)[0])
    name = device_name(device)
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} over {os.cpu_count()} cores")
    print(f"{args.arch}, {args.images} images {args.height}x{args.width} ({args.dataset}), "
          f"batch {args.batch_size}, {args.workers} workers, {args.repeats} repeats (median)")
    print(f"bare loop           : {statistics.median(bare):7.2f} images/s   ({', '.join(f'{v:.2f}' for v in bare)})")
    print(f"segbench run (cell) : {statistics.median(harness):7.2f} images/s   "
          f"({', '.join(f'{v:.2f}' for v in harness)})")
    print(f"segbench run (wall) : {statistics.median(walls):7.2f} images/s   (process start to exit)")
    overhead = statistics.median(bare) / statistics.median(harness) - 1
    target = 0.10 if device.type == "cuda" else 0.15
    print(f"overhead: {overhead:+.1%} (target <= {target:.0%}: {'met' if overhead <= target else 'NOT met'})")
    if saving:
        cost = statistics.median(harness) / statistics.median(saving) - 1
        print(f"segbench run, save_predictions: {statistics.median(saving):7.2f} images/s   "
              f"({', '.join(f'{v:.2f}' for v in saving)})")
        print(f"saving predictions: {cost:+.1%} of the evaluation time "
              f"(target <= 10%: {'met' if cost <= 0.10 else 'NOT met'})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="deeplabv3", choices=["fcn", "unet", "deeplabv3", "pspnet"])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads, both sides")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dataset", choices=["folder", "synthetic"], default="folder")
    parser.add_argument("--save-predictions", action="store_true",
                        help="also time a run that saves its predictions")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
