"""The same net as eager torch, TorchScript and ONNX Runtime, through segbench's own adapters.

One of segbench's built-in nets with its demo weights (``builtin``) is traced
to a TorchScript file (``torchscript``) and exported to an ONNX file
(``onnx``, the TorchScript-based exporter, fixed input size), in a temporary
folder. The three adapters get the same image and the same number of threads
(``torch.set_num_threads``; the onnx adapter gives ONNX Runtime torch's count).
The calls alternate between the three, repeat after repeat, so a change of
machine load hits all alike. Two scopes, as segbench's profiler names them:
``model`` (the network's forward on a preprocessed batch: for onnx, the
session run and the copies to and from numpy) and ``end_to_end``
(``adapter.predict`` on the uint8 image: normalisation, forward, resize,
argmax). Printed: the median latency of each, its ratio to eager, the pixels
whose prediction agrees with eager's, and the machine's load average before
and after. With ``--device cuda`` the adapters run on the GPU (ONNX Runtime's
CUDA provider) and each call ends with a synchronize before the clock is read.

    PYTHONPATH=. python benchmarks/exported_speed.py [--arch deeplabv3] [--height 256] [--width 512]
        [--repeats 30] [--warmup 3] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.data.synthetic import SyntheticDataset
from segbench.environment import cpu_name
from segbench.models.base import ModelAdapter
from segbench.models.nets import ARCHS, load_demo_weights
from segbench.registry import MODELS, load_plugins
from segbench.types import DatasetInfo

VARIANTS = ("builtin", "torchscript", "onnx")


def export(arch: str, folder: Path, size: tuple[int, int], device: torch.device) -> dict[str, dict[str, Any]]:
    """Suite model entries of the three variants; the files are written to ``folder``."""
    net, meta = load_demo_weights(arch)
    example = torch.randn(1, 3, *size)
    torch.jit.trace(net, example).save(str(folder / "net.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated in favour of dynamo's
        torch.onnx.export(net, (example,), str(folder / "net.onnx"), dynamo=False, input_names=["input"],
                          output_names=["logits"])
    common = {"num_classes": meta["num_classes"], "mean": meta["mean"], "std": meta["std"]}
    providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    return {"builtin": {"type": "builtin", "arch": arch},
            "torchscript": {"type": "torchscript", "path": str(folder / "net.pt"), **common},
            "onnx": {"type": "onnx", "path": str(folder / "net.onnx"), "input_size": list(size),
                     "providers": providers, **common}}


def build(entry: dict[str, Any], num_classes: int, device: torch.device) -> ModelAdapter:
    source = MODELS[entry["type"]]
    config = source.config.model_validate({"name": entry["type"], **entry})
    if source.check is not None:
        source.check(config)
    info = DatasetInfo("exported_speed", num_classes, [f"class_{i}" for i in range(num_classes)])
    return source.build(config, info, device)


def calls(adapter: ModelAdapter, image: np.ndarray) -> dict[str, Callable[[], Any]]:
    network, args = adapter.forward_inputs([image])
    return {"model": lambda: network(*args), "end_to_end": lambda: adapter.predict([image], ["image"])}


def measure(adapters: dict[str, ModelAdapter], image: np.ndarray, repeats: int, warmup: int,
            device: torch.device) -> dict[tuple[str, str], list[float]]:
    """Milliseconds per call, by (variant, scope); the variants alternate call after call."""
    timed = {(variant, scope): call for variant, adapter in adapters.items()
             for scope, call in calls(adapter, image).items()}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in timed}
    with torch.inference_mode():
        for repeat in range(warmup + repeats):
            for key, call in timed.items():
                started = time.perf_counter()
                call()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if repeat >= warmup:
                    times[key].append((time.perf_counter() - started) * 1000)
    return times


def agreement(adapters: dict[str, ModelAdapter], image: np.ndarray) -> dict[str, float]:
    with torch.inference_mode():
        predictions = {variant: adapter.predict([image], ["image"])[0] for variant, adapter in adapters.items()}
    return {variant: float((p == predictions["builtin"]).float().mean()) for variant, p in predictions.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="deeplabv3", choices=sorted(ARCHS))
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.set_num_threads(args.threads)
    load_plugins()
    import onnxruntime

    size = (args.height, args.width)
    image = SyntheticDataset(num_images=1, height=args.height, width=args.width).load(0).image
    with tempfile.TemporaryDirectory() as folder:
        entries = export(args.arch, Path(folder), size, device)
        num_classes = load_demo_weights(args.arch)[1]["num_classes"]
        adapters = {variant: build(entries[variant], num_classes, device) for variant in VARIANTS}
        load_before = os.getloadavg()
        times = measure(adapters, image, args.repeats, args.warmup, device)
        load_after = os.getloadavg()
        agree = agreement(adapters, image)

    print(f"{args.arch} (demo weights), one {args.height}x{args.width} image, {args.repeats} repeats after "
          f"{args.warmup} warm-up, {args.threads} threads, device {args.device}; {cpu_name()}, "
          f"{os.cpu_count()} CPUs; torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"{'variant':<12} {'scope':<11} {'p50 ms':>9} {'vs eager':>9} {'agreement':>10}")
    for scope in ("model", "end_to_end"):
        eager = float(np.median(times["builtin", scope]))
        for variant in VARIANTS:
            p50 = float(np.median(times[variant, scope]))
            print(f"{variant:<12} {scope:<11} {p50:9.2f} {p50 / eager:8.2f}x {agree[variant]:10.4%}")


if __name__ == "__main__":
    main()
