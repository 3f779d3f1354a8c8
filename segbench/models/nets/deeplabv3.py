"""DeepLabV3 (Chen et al. 2017): dilated backbone at output stride 8, ASPP with image pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.nets.blocks import BACKBONE_CHANNELS, Backbone, conv_bn_relu

# The paper's rates (12, 24, 36 at stride 8) are for 513-pixel crops; these suit 64x128 images.
ASPP_RATES = (2, 4, 6)
ASPP_CHANNELS = 48


class ASPP(nn.Module):
    """A 1x1 branch, one 3x3 branch per rate, and an image-pooling branch, fused by a 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(c_in, c_out, kernel=1)] + [conv_bn_relu(c_in, c_out, dilation=r) for r in rates]
        )
        self.image_pool = conv_bn_relu(c_in, c_out, kernel=1)
        self.project = conv_bn_relu(c_out * (len(rates) + 2), c_out, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(F.adaptive_avg_pool2d(x, 1)).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = Backbone(dilated=True)
        self.aspp = ASPP(BACKBONE_CHANNELS[4], ASPP_CHANNELS, ASPP_RATES)
        self.head = nn.Sequential(conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS), nn.Dropout2d(0.1),
                                  nn.Conv2d(ASPP_CHANNELS, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.aspp(self.backbone(x)[-1]))


def build_deeplabv3(num_classes: int) -> nn.Module:
    return DeepLabV3(num_classes)
