"""Loading state dicts safely: safetensors, or torch.load with weights_only=True."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from segbench.errors import UserError


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors or .pth/.pt file; a ``state_dict`` key is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise UserError("checkpoint file not found", source=str(path))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt file fails in many ways; all mean the same to the user
        raise UserError(f"cannot load checkpoint: {type(error).__name__}: {error}",
                        source=str(path)) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError("checkpoint does not hold a state dict", source=str(path))
    return state
