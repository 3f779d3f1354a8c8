"""FCN-8s (Long et al. 2015) on a small ResNet: class scores from strides 32, 16 and 8, summed coarse to fine."""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.nets.blocks import BACKBONE_CHANNELS, Backbone, conv_bn_relu, resize_to


class FCN8s(nn.Module):
    """Returns logits at stride 8; the original learned 2x upsampling is a fixed bilinear one here."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        c = BACKBONE_CHANNELS
        self.backbone = Backbone(dilated=False)
        self.head = nn.Sequential(conv_bn_relu(c[4], c[4]), nn.Dropout2d(0.1))  # fc6/fc7 as a conv
        self.score32 = nn.Conv2d(c[4], num_classes, 1)
        self.score16 = nn.Conv2d(c[3], num_classes, 1)
        self.score8 = nn.Conv2d(c[2], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, f8, f16, f32 = self.backbone(x)
        scores = self.score32(self.head(f32))
        scores = resize_to(scores, f16) + self.score16(f16)
        return resize_to(scores, f8) + self.score8(f8)


def build_fcn(num_classes: int) -> nn.Module:
    return FCN8s(num_classes)
