"""The software and hardware a result was computed with."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from segbench.errors import UserError

PACKAGES = ("segbench", "torch", "numpy", "pandas", "pyarrow", "pydantic", "scipy", "pillow",
            "safetensors", "mmsegmentation", "mmcv", "mmengine", "transformers", "onnx", "onnxruntime",
            "imagecorruptions-imaug", "numba")
"""Recorded in every manifest: the versions that can move a figure (None: not installed)."""


def package_versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for, but CUDA is not available", field="device")
    return device


def cpu_name() -> str:
    """The CPU model ("AMD EPYC 7R13 ..."): it times the end_to_end scope's preprocessing, even on a GPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def git_sha(path: Path) -> str | None:
    """The commit of the git checkout holding ``path``, with '+dirty' for local changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "device_name": device_name(device),
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
        "segbench_git_sha": git_sha(Path(__file__).parent),
    }
