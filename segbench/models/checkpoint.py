"""Loading state dicts safely: safetensors, or torch.load with weights_only=True."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from segbench.errors import UserError

# How torch's weights_only unpickler names what it refuses: "Unsupported global: GLOBAL argparse.Namespace",
# or, for a module it never allows, "Trying to load unsupported GLOBAL os.system whose module os is blocked".
REFUSED_GLOBAL = re.compile(r"nsupported (?:global: )?GLOBAL ([\w.]+)")


def load_error(error: Exception, path: Path, remedy: str, field: str | None = None) -> UserError:
    """One line for a failed torch.load: the type a safe load refused, and ``remedy``; else a corrupt file.

    torch's own weights_only message runs to several paragraphs and offers weights_only=False.
    """
    refused = REFUSED_GLOBAL.search(str(error))
    if refused:
        return UserError(f"the checkpoint holds a non-tensor object ({refused.group(1)}), which a safe load "
                         f"(torch.load with weights_only=True) refuses; {remedy}", source=str(path), field=field)
    return UserError(f"cannot load checkpoint (corrupt, or not a torch checkpoint: {type(error).__name__})",
                     source=str(path), field=field)


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
        raise load_error(error, path, "save the model's state_dict alone (torch.save(model.state_dict(), "
                                      "path)) or as a .safetensors file") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError("checkpoint does not hold a state dict", source=str(path))
    return state
