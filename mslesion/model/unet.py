"""A compact 3-D U-Net (instance norm, leaky ReLU, optional residual blocks).

Pure torch: no other mslesion import, so training can run where only torch is installed.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Two 3x3x3 conv -> InstanceNorm -> LeakyReLU, with an optional residual shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm3d(cout, affine=True)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm3d(cout, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip: nn.Module | None = None
        if residual:
            self.skip = (nn.Identity() if cin == cout and stride == 1 else
                         nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False),
                                       nn.InstanceNorm3d(cout, affine=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.skip is not None:
            y = y + self.skip(x)
        return self.act(y)


class UNet3D(nn.Module):
    """U-Net with ``levels`` resolutions (``levels - 1`` stride-2 downsamplings); outputs one logit map."""

    def __init__(self, in_channels: int = 1, base: int = 16, levels: int = 4, residual: bool = True,
                 max_channels: int = 256) -> None:
        super().__init__()
        chans = [min(base * 2**i, max_channels) for i in range(levels)]
        self.encoders = nn.ModuleList()
        cin = in_channels
        for i, c in enumerate(chans):
            self.encoders.append(ConvBlock(cin, c, stride=1 if i == 0 else 2, residual=residual))
            cin = c
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(levels - 1, 0, -1):
            self.ups.append(nn.ConvTranspose3d(chans[i], chans[i - 1], 2, stride=2, bias=False))
            self.decoders.append(ConvBlock(2 * chans[i - 1], chans[i - 1], residual=residual))
        self.head = nn.Conv3d(chans[0], 1, 1)
        self.divisor = 2 ** (levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups, self.decoders):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def build_unet(arch: dict) -> UNet3D:
    """Build from the ``architecture`` block of model.json."""
    return UNet3D(in_channels=int(arch.get("in_channels", 1)), base=int(arch.get("base", 16)),
                  levels=int(arch.get("levels", 4)), residual=bool(arch.get("residual", True)),
                  max_channels=int(arch.get("max_channels", 256)))


class MeanEnsemble(nn.Module):
    """Several networks of one architecture; the output is the logit of their mean probability.

    Averaging probabilities (not logits) is how nnU-Net combines its fold models.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = torch.stack([torch.sigmoid(m(x).float()) for m in self.members]).mean(0)
        return torch.logit(prob.clamp(1e-6, 1 - 1e-6))
