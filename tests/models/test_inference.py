import torch
from torch import nn

from segbench.models.inference import _window_starts, segment, slide_logits, whole_logits
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
