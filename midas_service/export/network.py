"""MiDaS v2.1 small: timm's EfficientNet-Lite3 encoder plus the "expand" fusion decoder.

Module names follow the official ``midas_v21_small_256.pt`` state dict exactly, so that file
loads with ``strict=True``. Export-side only: this is the one module that imports timm.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

ENCODER_NAME = "tf_efficientnet_lite3"
ENCODER_CHANNELS = (32, 48, 136, 384)
DECODER_CHANNELS = (64, 128, 256, 512)


class Encoder(nn.Module):
    """timm's EfficientNet-Lite3 cut into the four resolution levels of the official file."""

    def __init__(self) -> None:
        super().__init__()
        net = timm.create_model(ENCODER_NAME, pretrained=False)
        blocks = net.blocks
        # timm's stem BN applies its activation itself; index 2 only keeps the official indices.
        self.layer1 = nn.Sequential(net.conv_stem, net.bn1, nn.Identity(), blocks[0], blocks[1])
        self.layer2 = nn.Sequential(blocks[2])
        self.layer3 = nn.Sequential(blocks[3], blocks[4])
        self.layer4 = nn.Sequential(blocks[5], blocks[6])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        level1 = self.layer1(x)
        level2 = self.layer2(level1)
        level3 = self.layer3(level2)
        level4 = self.layer4(level3)
        return level1, level2, level3, level4


class ResidualConvUnit(nn.Module):
    """ReLU -> conv3x3 -> ReLU -> conv3x3, plus the unmodified input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out, inplace=True))
        out += x
        return out


class FusionBlock(nn.Module):
    """Adds the refined skip input, refines, doubles the resolution, then projects channels."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        # Registration order matches the official state dict (out_conv first).
        self.out_conv = nn.Conv2d(channels, out_channels, 1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Upsample2x(nn.Module):
    """Bilinear x2 without corner alignment, as in the official output head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """The 'scratch' part of the official file (features=64, expand=True)."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4 = DECODER_CHANNELS
        self.layer1_rn = nn.Conv2d(ENCODER_CHANNELS[0], c1, 3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(ENCODER_CHANNELS[1], c2, 3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(ENCODER_CHANNELS[2], c3, 3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(ENCODER_CHANNELS[3], c4, 3, padding=1, bias=False)
        self.refinenet4 = FusionBlock(c4, c3)
        self.refinenet3 = FusionBlock(c3, c2)
        self.refinenet2 = FusionBlock(c2, c1)
        self.refinenet1 = FusionBlock(c1, c1)
        self.output_conv = nn.Sequential(
            nn.Conv2d(c1, 32, 3, padding=1),
            Upsample2x(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, levels: tuple[torch.Tensor, ...]) -> torch.Tensor:
        level1, level2, level3, level4 = levels
        path = self.refinenet4(self.layer4_rn(level4))
        path = self.refinenet3(path, self.layer3_rn(level3))
        path = self.refinenet2(path, self.layer2_rn(level2))
        path = self.refinenet1(path, self.layer1_rn(level1))
        return self.output_conv(path)


class MidasSmall(nn.Module):
    """(N, 3, H, W) normalised RGB, H and W multiples of 32 -> (N, H, W) relative inverse depth."""

    def __init__(self) -> None:
        super().__init__()
        self.pretrained = Encoder()
        self.scratch = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scratch(self.pretrained(x)).squeeze(1)


def build_model() -> MidasSmall:
    """An untrained network in eval mode; load weights with ``load_state_dict(strict=True)``."""
    return MidasSmall().eval()
