"""PSPNet (Zhao et al. 2017): dilated backbone at output stride 8, pyramid pooling over 1, 2, 3 and 6 bins."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.nets.blocks import BACKBONE_CHANNELS, Backbone, conv_bn_relu, resize_to

BINS = (1, 2, 3, 6)
BRANCH_CHANNELS = 24
HEAD_CHANNELS = 48


class PyramidPooling(nn.Module):
    """Average-pool to each bin grid, reduce by a 1x1 conv, upsample, concatenate with the input."""

    def __init__(self, c_in: int, c_branch: int, bins: tuple[int, ...]) -> None:
        super().__init__()
        self.bins = bins
        self.reduce = nn.ModuleList(conv_bn_relu(c_in, c_branch, kernel=1) for _ in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [resize_to(conv(F.adaptive_avg_pool2d(x, b)), x) for b, conv in zip(self.bins, self.reduce)]
        return torch.cat([x] + pooled, dim=1)


class PSPNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        c = BACKBONE_CHANNELS[4]
        self.backbone = Backbone(dilated=True)
        self.ppm = PyramidPooling(c, BRANCH_CHANNELS, BINS)
        self.head = nn.Sequential(conv_bn_relu(c + BRANCH_CHANNELS * len(BINS), HEAD_CHANNELS), nn.Dropout2d(0.1),
                                  nn.Conv2d(HEAD_CHANNELS, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ppm(self.backbone(x)[-1]))


def build_pspnet(num_classes: int) -> nn.Module:
    return PSPNet(num_classes)
