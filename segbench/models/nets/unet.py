"""U-Net (Ronneberger et al. 2015): encoder-decoder with skip connections, full-resolution logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.nets.blocks import conv_bn_relu, resize_to

CHANNELS = (16, 32, 48, 64)


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))


class UNet(nn.Module):
    """A 2x max-pooling before each level but the first; the decoder upsamples
    bilinearly to each skip's size, so any input size works.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        c = CHANNELS
        levels = range(len(c) - 1)
        self.encoders = nn.ModuleList([double_conv(3, c[0])] + [double_conv(c[i], c[i + 1]) for i in levels])
        self.decoders = nn.ModuleList(double_conv(c[i + 1] + c[i], c[i]) for i in reversed(levels))
        self.classifier = nn.Conv2d(c[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = decoder(torch.cat([resize_to(x, skip), skip], dim=1))
        return self.classifier(x)


def build_unet(num_classes: int) -> nn.Module:
    return UNet(num_classes)
