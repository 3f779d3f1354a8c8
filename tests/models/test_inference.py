from collections import OrderedDict

import pytest
import torch
from torch import nn

import segbench
from segbench.api import execute
from segbench.errors import UserError
from segbench.models.inference import _window_starts, logits_of, segment, slide_logits, whole_logits
from segbench.config import InferenceConfig


class Downsampling(nn.Module):
    """A position-independent net with output stride 2: logits at half size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[..., ::2, ::2]


def test_window_starts_follow_mmseg_grid():
    # mmseg: grids = max(len - crop + stride - 1, 0) // stride + 1, last window flush with the edge
    assert _window_starts(10, 4, 3) == [0, 3, 6]
    assert _window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert _window_starts(3, 4, 3) == [0]  # image smaller than the crop: one window


def test_slide_with_a_pointwise_net_equals_whole():
    net = nn.Conv2d(3, 5, kernel_size=1)
    batch = torch.randn(2, 3, 13, 22)
    expected = whole_logits(net, batch)
    assert torch.allclose(slide_logits(net, batch, (6, 8), (4, 5)), expected, atol=1e-6)


def test_whole_resizes_logits_to_input():
    batch = torch.randn(1, 3, 13, 21)
    assert whole_logits(Downsampling(), batch).shape == (1, 4, 13, 21)


def test_slide_averages_overlapping_windows():
    class Constant(nn.Module):
        """Each window returns 1 everywhere: the average must stay 1 where windows overlap."""

        def forward(self, x):
            return torch.ones(x.shape[0], 2, *x.shape[-2:])

    out = slide_logits(Constant(), torch.zeros(1, 3, 9, 9), (5, 5), (2, 2))
    assert torch.allclose(out, torch.ones(1, 2, 9, 9))


def test_flip_tta_with_a_pointwise_net_equals_softmax_of_whole():
    net = nn.Conv2d(3, 5, kernel_size=1)
    batch = torch.randn(1, 3, 8, 12)
    scores = segment(net, batch, InferenceConfig(flip=True))
    assert torch.allclose(scores, whole_logits(net, batch).softmax(1), atol=1e-6)


def test_flip_tta_undoes_the_flip():
    class LeftHalf(nn.Module):
        """Class 1 on the left half of whatever it sees: flipped views disagree unless unflipped."""

        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, *x.shape[-2:])
            out[:, 1, :, : x.shape[-1] // 2] = 10.0
            out[:, 0, :, x.shape[-1] // 2:] = 10.0
            return out

    scores = segment(LeftHalf(), torch.zeros(1, 3, 4, 8), InferenceConfig(flip=True))
    # left half: class 1 in the plain view, class 0 in the flipped one -> both about 0.5
    assert torch.allclose(scores[0, 1, :, :4], torch.full((4, 4), 0.5), atol=1e-3)


def test_multiscale_returns_scores_at_input_size():
    batch = torch.randn(2, 3, 16, 24)
    scores = segment(Downsampling(), batch, InferenceConfig(scales=[0.5, 1.0, 1.5], flip=True))
    assert scores.shape == (2, 4, 16, 24)
    assert torch.allclose(scores.sum(1), torch.ones(2, 16, 24), atol=1e-5)


# ---------------------------------------------------------------- what a net returns (point 3)

def test_logits_are_read_from_dicts_outputs_tuples_and_lists():
    class Output:  # a transformers-like output that is no dict
        def __init__(self, logits):
            self.logits = logits

    logits = torch.randn(2, 4, 5, 6)
    for output in (logits, {"logits": logits}, {"out": logits, "aux": -logits}, OrderedDict(logits=logits),
                   (logits, -logits), [logits], Output(logits)):
        assert logits_of(output) is logits


@pytest.mark.parametrize("output, described", [
    ("logits", "a str"),
    ({"masks": torch.zeros(1, 2, 3, 3)}, "a dict with keys ['masks']"),
    ((), "a tuple"),
    (("logits", 1), "a tuple whose first element is a str"),
    (torch.zeros(2, 5, 6), "a tensor of shape (2, 5, 6)"),
])
def test_anything_else_is_one_error_saying_what_was_returned(output, described):
    with pytest.raises(UserError) as info:
        logits_of(output)
    assert str(info.value).startswith(f"the model returned {described}; expected a tensor N x K x H x W, "
                                      "or a dict or output with `logits` or `out`")


def _suite(models):
    return {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0, "models": models,
            "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 3, "height": 24, "width": 40}]}


def test_python_models_returning_dicts_outputs_and_tuples_predict_as_the_plain_one(tmp_path, nets):
    def wrapped(kind):
        return {"name": kind, "type": "python", "factory": "tiny_nets:wrapped",
                "kwargs": {"num_classes": 6, "kind": kind}, "num_classes": 6}

    kinds = ["out", "logits", "tuple", "list", "attribute"]
    plain = {"name": "plain", "type": "python", "factory": "tiny_nets:pointwise", "kwargs": {"num_classes": 6},
             "num_classes": 6}
    flipped = {"inference": {"flip": True}}
    models = ([plain, {**plain, "name": "plain_flip", **flipped}] + [wrapped(kind) for kind in kinds]
              + [{**wrapped("out"), "name": "out_flip", **flipped}])
    assert execute(_suite(models), run_dir=tmp_path / "run").ok
    per_image = segbench.load(tmp_path / "run").per_image.set_index(["model", "image_id"])
    for name, reference in [(kind, "plain") for kind in kinds] + [("out_flip", "plain_flip")]:
        for column in ("area_intersect", "area_pred_label"):
            assert (per_image.loc[name, column].map(list).tolist()
                    == per_image.loc[reference, column].map(list).tolist()), name


@pytest.mark.parametrize("kind, described", [("string", "a str"), ("masks", "a dict with keys ['masks']")])
def test_a_python_model_returning_something_else_fails_its_cell_in_one_line(tmp_path, nets, kind, described):
    model = {"name": "odd", "type": "python", "factory": "tiny_nets:wrapped",
             "kwargs": {"num_classes": 6, "kind": kind}, "num_classes": 6}
    error = execute(_suite([model]), run_dir=tmp_path / "run").errors["odd__shapes"]
    assert error.startswith(f"UserError: the model returned {described}; expected a tensor N x K x H x W")
    assert "\n" not in error
