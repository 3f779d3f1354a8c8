"""What corrupting images costs, and what the corruption cache saves a second model (issue #18, "Speed").

1. Per corruption (all 19 by default, ``--names``), at ``--severity`` (3), on one seeded synthetic scene of
   ``--height`` x ``--width`` (1024x2048: textured background, smooth shapes with sharp edges, as
   ``segbench.data.synthetic`` draws them): ``corrupt_image`` against a cache hit through ``cached_corrupt``
   (the key, a sha256 over the source pixels, and the PNG decode: what a DataLoader worker does on a hit),
   and the write of a miss (PNG encode, atomic write). Each corruption is first called once on a 64x64
   image, so that one-time costs (numba compiling glass_blur's pixel shuffle, imports) are not in its
   figures; their total is printed apart (each DataLoader worker pays it once). Medians of ``--repeats``;
   the cached file sits in the OS's page cache, so a read from a cold disk adds its transfer. With all 15
   common corruptions measured, the figures are projected onto a 15 x 5 Cityscapes-C run (500 images),
   the severity measured standing for all five.
2. A suite run (``segbench.api.execute``, in this process) of two built-in models (``--models``, demo
   weights, the accuracy group only) over ``--images`` scenes written as a ``folder`` dataset of PNGs,
   ``--corruptions`` at ``--severity``, with a ``cache:`` folder, after a run of the clean cells alone (first
   forward passes and imports out of the figures): the first model's corrupted cells corrupt in the
   DataLoader workers and fill the cache, the second model's read it. From summary.parquet: each
   cell's ``eval_seconds`` per image, and what a corrupted cell adds to the same model's clean cell (for the
   first model, the corruption as far as the workers do not hide it behind the forward pass; for the
   second, the cache's reads). Also the cache's size on disk per image.

    PYTHONPATH=. python benchmarks/corruption_cost.py [--part table|run|both] [--height 1024] [--width 2048]
        [--severity 3] [--repeats 3] [--names gaussian_noise,...] [--images 4]
        [--corruptions gaussian_noise,motion_blur,zoom_blur] [--models fcn,deeplabv3] [--batch-size 2]
        [--num-workers auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import torch

from benchmarks.harness_overhead import write_folder_dataset
from segbench.api import execute
from segbench.corruptions import (CLEAN, COMMON, CORRUPTIONS_ALL, CorruptionCache, cached_corrupt, corrupt_image,
                                  package_version)
from segbench.data.synthetic import SyntheticDataset
from segbench.environment import cpu_name
from segbench.runner import loader_workers

CITYSCAPES_VAL = 500
SEVERITY_LEVELS = 5
SEED = 0
IMAGE_ID = "scene"
T = TypeVar("T")


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """(seconds ``function()`` took, its result)."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def machine_line(loads: list[float]) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu_name()}, {cores} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"imagecorruptions-imaug {package_version()}; load average (1 min) "
            f"{', '.join(f'{v:.2f}' for v in loads)} (before, after each part)")


# ---------------------------------------------------------------- 1. one image, per corruption


def cost_table(image: np.ndarray, names: list[str], severity: int, repeats: int, cache_dir: Path) -> pd.DataFrame:
    """Per corruption: first call on a small image, median seconds to corrupt, to write and to read a hit."""
    small = np.ascontiguousarray(image[:64, :64])
    first = {name: timed(lambda: corrupt_image(small, name, severity, SEED, IMAGE_ID))[0] for name in names}
    cache = CorruptionCache(cache_dir)
    timings: dict[str, dict[str, list[float]]] = {name: {"corrupt": [], "write": [], "read": []} for name in names}
    sizes = {}
    for _ in range(repeats):
        for name in names:
            elapsed, corrupted = timed(lambda: corrupt_image(image, name, severity, SEED, IMAGE_ID))
            timings[name]["corrupt"].append(elapsed)
            path = cache.path(image, name, severity, SEED, IMAGE_ID)
            timings[name]["write"].append(timed(lambda: cache.put(path, corrupted))[0])
            elapsed, hit = timed(lambda: cached_corrupt(cache, image, name, severity, SEED, IMAGE_ID))
            timings[name]["read"].append(elapsed)
            if not np.array_equal(hit, corrupted):
                raise SystemExit(f"{name}: the cache returned other pixels than it was given")
            sizes[name] = path.stat().st_size
    rows = [{"corruption": name, "first_call_s": first[name],
             **{f"{kind}_s": statistics.median(values) for kind, values in timings[name].items()},
             "png_mb": sizes[name] / 1e6} for name in names]
    table = pd.DataFrame(rows)
    table["ratio"] = table["corrupt_s"] / table["read_s"]
    return table


def print_table(table: pd.DataFrame, args: argparse.Namespace) -> None:
    print(f"\n1. one {args.height}x{args.width} RGB scene, severity {args.severity}, median of {args.repeats}")
    print("| corruption | corrupt s | cache read s | corrupt / read | cache write s | PNG MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in table.itertuples(index=False):
        print(f"| {row.corruption} | {row.corrupt_s:.3f} | {row.read_s:.3f} | {row.ratio:.1f}x | "
              f"{row.write_s:.3f} | {row.png_mb:.2f} |")
    print(f"| **all {len(table)}** | {table.corrupt_s.sum():.2f} | {table.read_s.sum():.2f} | "
          f"{table.corrupt_s.sum() / table.read_s.sum():.0f}x | {table.write_s.sum():.2f} | "
          f"{table.png_mb.mean():.2f} (mean) |")
    slowest = table.loc[table.first_call_s.idxmax()]
    print(f"first calls on a 64x64 image (once per process): {table.first_call_s.sum():.2f} s in all, "
          f"{slowest.first_call_s:.2f} s of it {slowest.corruption}")


def print_projection(table: pd.DataFrame, severity: int) -> None:
    """The 15 x 5 Cityscapes-C run, from the common corruptions' figures at the one severity measured."""
    common = table[table.corruption.isin(COMMON)]
    if len(common) < len(COMMON):
        print(f"(no 15 x 5 projection: {len(common)} of the {len(COMMON)} common corruptions measured)")
        return
    versions = CITYSCAPES_VAL * SEVERITY_LEVELS
    corrupt_h = common.corrupt_s.sum() * versions / 3600
    write_h = common.write_s.sum() * versions / 3600
    read_h = common.read_s.sum() * versions / 3600
    disk_gb = common.png_mb.sum() * versions / 1e3
    print(f"\n15 x 5 Cityscapes-C ({CITYSCAPES_VAL} images, {len(COMMON) * versions} corrupted images), severity "
          f"{severity} standing for all five, one core each:")
    print(f"  corrupting: {corrupt_h:.1f} core-hours, plus {write_h:.2f} to write the cache; "
          f"{common.corrupt_s.mean():.2f} s per corrupted image on average")
    print(f"  reading from the cache: {read_h:.2f} core-hours ({common.read_s.mean() * 1000:.0f} ms per image)")
    print(f"  cache on disk: {disk_gb:.0f} GB ({common.png_mb.mean():.2f} MB per corrupted image)")


# ---------------------------------------------------------------- 2. a second model on the cache


def suite(args: argparse.Namespace, data: Path, cache: Path) -> dict:
    return {"name": "corruption-cost", "device": "cpu", "batch_size": args.batch_size,
            "num_workers": args.num_workers if args.num_workers == "auto" else int(args.num_workers),
            "datasets": [{"name": "scenes", "type": "folder", "root": str(data), "num_classes": 6}],
            "models": [{"name": arch, "type": "builtin", "arch": arch} for arch in args.models],
            "metrics": {"accuracy": {}, "boundary": None, "distance": None},
            "corruptions": {"names": args.corruptions, "severities": [args.severity], "seed": SEED,
                            "cache": str(cache)}}


def cache_run(args: argparse.Namespace, tmp: Path) -> tuple[pd.DataFrame, list[Path]]:
    """The run's summary rows (model, corruption, eval seconds per image) and the cache's files."""
    data, cache = tmp / "data", tmp / "cache"
    write_folder_dataset(data, args.images, args.height, args.width)
    spec = suite(args, data, cache)
    execute(dict(spec, corruptions=None), run_dir=tmp / "warm", resume=False)  # first forward passes, imports
    outcome = execute(spec, run_dir=tmp / "run", resume=False)
    if not outcome.ok:
        raise SystemExit(f"the run failed: {outcome.errors}")
    summary = pd.read_parquet(tmp / "run" / "summary.parquet")
    summary["seconds_per_image"] = summary["eval_seconds"] / args.images
    return summary[["model", "corruption", "seconds_per_image"]], sorted(cache.rglob("*.png"))


def print_cache_run(args: argparse.Namespace, summary: pd.DataFrame, files: list[Path], clean_mb: float) -> None:
    print(f"\n2. {args.images} scenes {args.height}x{args.width} (folder of PNGs, {clean_mb:.2f} MB each), "
          f"severity {args.severity}, batch {args.batch_size}, DataLoader workers "
          f"{loader_workers(args.num_workers if args.num_workers == 'auto' else int(args.num_workers))}, "
          f"accuracy group only; eval_seconds per image (summary.parquet), and what corrupting adds to the "
          f"model's clean cell")
    print(f"| corruption | {' | '.join(args.models)} | {' | '.join(f'{m}, over clean' for m in args.models)} |")
    print(f"| --- |{' --- |' * 2 * len(args.models)}")
    per_image = summary.pivot(index="corruption", columns="model", values="seconds_per_image")[args.models]
    clean = per_image.loc[CLEAN]
    for corruption in [CLEAN, *args.corruptions]:
        row = per_image.loc[corruption]
        added = [f"{v:+.2f}" if corruption != CLEAN else "" for v in row - clean]
        print(f"| {corruption} | {' | '.join(f'{v:.2f}' for v in row)} | {' | '.join(added)} |")
    added = (per_image.drop(index=CLEAN) - clean).sum()
    first, second = args.models[0], args.models[-1]
    print(f"all {len(args.corruptions)} corruptions, per image: {first} (corrupts, fills the cache) adds "
          f"{added[first]:.2f} s, {second} (reads the cache) {added[second]:+.2f} s")
    total = sum(path.stat().st_size for path in files)
    print(f"cache: {len(files)} files, {total / 1e6:.1f} MB, {total / 1e6 / args.images:.2f} MB per image "
          f"({total / 1e6 / len(files):.2f} MB per corrupted image)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("table", "run", "both"), default="both")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--severity", type=int, default=3, choices=range(1, 6))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--names", default=",".join(CORRUPTIONS_ALL), help="corruptions of part 1")
    parser.add_argument("--images", type=int, default=4, help="scenes of part 2's run")
    parser.add_argument("--corruptions", default="gaussian_noise,motion_blur,zoom_blur",
                        help="corruptions of part 2's run")
    parser.add_argument("--models", default="fcn,deeplabv3",
                        help="built-in archs of part 2; the first fills the cache")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-workers", default="auto")
    args = parser.parse_args(argv)
    args.names, args.corruptions, args.models = (value.split(",") for value in
                                                 (args.names, args.corruptions, args.models))
    unknown = [name for name in args.names + args.corruptions if name not in CORRUPTIONS_ALL]
    if unknown:
        parser.error(f"unknown corruption {unknown[0]!r}; valid: {', '.join(CORRUPTIONS_ALL)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = summary = None
        if args.part in ("table", "both"):
            image = SyntheticDataset(num_images=1, height=args.height, width=args.width).load(0).image
            table = cost_table(image, args.names, args.severity, args.repeats, tmp / "table-cache")
            loads.append(os.getloadavg()[0])
        if args.part in ("run", "both"):
            summary, files = cache_run(args, tmp)
            clean_mb = statistics.mean(path.stat().st_size for path in (tmp / "data" / "images").iterdir()) / 1e6
            loads.append(os.getloadavg()[0])
        print(machine_line(loads))
        if table is not None:
            print_table(table, args)
            print_projection(table, args.severity)
        if summary is not None:
            print_cache_run(args, summary, files, clean_mb)


if __name__ == "__main__":
    main()
