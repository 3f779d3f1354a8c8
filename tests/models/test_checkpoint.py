"""Safe loading of state dicts (`python` and `builtin` models): what torch allows, and one-line refusals."""

from collections import OrderedDict

import pytest
import torch

from segbench.api import execute
from segbench.errors import UserError
from segbench.models.checkpoint import load_state_dict


class TrainingArgs:
    """A non-tensor object a training script might save beside the weights."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


WEIGHTS = OrderedDict(weight=torch.arange(6.0).reshape(6, 1, 1, 1).repeat(1, 3, 1, 1), bias=torch.zeros(6))


def refusal(path) -> str:
    with pytest.raises(UserError) as caught:
        load_state_dict(path)
    return str(caught.value)


def test_ordered_dict_state_dict_loads(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": WEIGHTS, "meta": {"epoch": 3}}, path)
    state = load_state_dict(path)
    assert list(state) == ["weight", "bias"] and torch.equal(state["weight"], WEIGHTS["weight"])


def test_custom_object_is_refused_in_one_line_naming_its_class(tmp_path):
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": WEIGHTS, "args": TrainingArgs(0.1)}, path)
    message = refusal(path)
    assert "\n" not in message
    assert f"non-tensor object ({TrainingArgs.__module__}.TrainingArgs)" in message
    assert message.startswith(f"{path}: ") and ".safetensors" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_is_one_line(tmp_path, damage):
    path = tmp_path / "broken.pth"
    torch.save(WEIGHTS, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint at all")
    message = refusal(path)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot load checkpoint (corrupt, or not a torch checkpoint: ")


def test_refused_checkpoint_fails_the_cell_in_one_line(tmp_path, nets):
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": WEIGHTS, "args": TrainingArgs(0.1)}, path)
    model = {"name": "pw", "type": "python", "factory": "tiny_nets:pointwise", "kwargs": {"num_classes": 6},
             "num_classes": 6, "checkpoint": str(path)}
    suite = {"name": "t", "device": "cpu", "num_workers": 0, "models": [model],
             "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 2, "height": 8, "width": 8}]}
    error = execute(suite, run_dir=tmp_path / "run").errors["pw__shapes"]
    assert "\n" not in error and "TrainingArgs" in error and str(path) in error
