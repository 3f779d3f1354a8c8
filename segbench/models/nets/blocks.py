"""Layers shared by the demo nets: conv-BN-ReLU, a small residual backbone, resizing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BACKBONE_CHANNELS = (16, 24, 32, 48, 64)  # stem, then stages 1-4


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref`` (any size, not only 2x)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a shortcut (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, stride=stride, dilation=dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Backbone(nn.Module):
    """A small ResNet: stem at stride 2, four stages at strides 4, 8, 16, 32.

    With ``dilated=True`` stages 3 and 4 keep stride 8 and dilate their
    convolutions by 2 and 4 instead, as DeepLab and PSPNet do to a ResNet.
    ``forward`` returns the four stage outputs.
    """

    def __init__(self, dilated: bool = False) -> None:
        super().__init__()
        c = BACKBONE_CHANNELS
        strides, dilations = ((2, 2, 1, 1), (1, 1, 2, 4)) if dilated else ((2, 2, 2, 2), (1, 1, 1, 1))
        self.stem = nn.Sequential(conv_bn_relu(3, c[0], stride=2), conv_bn_relu(c[0], c[0]))
        self.stages = nn.ModuleList(
            nn.Sequential(BasicBlock(c[i], c[i + 1], strides[i], dilations[i]),
                          BasicBlock(c[i + 1], c[i + 1], dilation=dilations[i]))
            for i in range(4)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
