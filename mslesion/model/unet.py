"""Compact U-Nets (instance norm, leaky ReLU, optional residual blocks): 3-D, and 2-D for the 2.5-D model.

Pure torch: no other mslesion import, so training can run where only torch is installed.
"""
from __future__ import annotations

import torch
from torch import nn

#: convolution, instance norm and transposed convolution of each spatial dimensionality
_LAYERS = {2: (nn.Conv2d, nn.InstanceNorm2d, nn.ConvTranspose2d),
           3: (nn.Conv3d, nn.InstanceNorm3d, nn.ConvTranspose3d)}


class ConvBlock(nn.Module):
    """Two 3x3(x3) conv -> InstanceNorm -> LeakyReLU, with an optional residual shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, residual: bool = True, dims: int = 3) -> None:
        super().__init__()
        conv, norm, _ = _LAYERS[dims]
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm(cout, affine=True)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=False)
        self.norm2 = norm(cout, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip: nn.Module | None = None
        if residual:
            self.skip = (nn.Identity() if cin == cout and stride == 1 else
                         nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), norm(cout, affine=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.skip is not None:
            y = y + self.skip(x)
        return self.act(y)


class UNet3D(nn.Module):
    """U-Net with ``levels`` resolutions (``levels - 1`` stride-2 downsamplings); outputs one logit map.

    ``dims`` 3 (default) works on (N, C, D, H, W); ``dims`` 2 on (N, C, H, W) (see :class:`UNet2D`).
    """

    def __init__(self, in_channels: int = 1, base: int = 16, levels: int = 4, residual: bool = True,
                 max_channels: int = 256, dims: int = 3) -> None:
        super().__init__()
        conv, _, up_conv = _LAYERS[dims]
        chans = [min(base * 2**i, max_channels) for i in range(levels)]
        self.encoders = nn.ModuleList()
        cin = in_channels
        for i, c in enumerate(chans):
            self.encoders.append(ConvBlock(cin, c, stride=1 if i == 0 else 2, residual=residual, dims=dims))
            cin = c
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(levels - 1, 0, -1):
            self.ups.append(up_conv(chans[i], chans[i - 1], 2, stride=2, bias=False))
            self.decoders.append(ConvBlock(2 * chans[i - 1], chans[i - 1], residual=residual, dims=dims))
        self.head = conv(chans[0], 1, 1)
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


class UNet2D(UNet3D):
    """The same U-Net on 2-D images (N, C, H, W)."""

    def __init__(self, in_channels: int = 1, base: int = 16, levels: int = 4, residual: bool = True,
                 max_channels: int = 256) -> None:
        super().__init__(in_channels, base, levels, residual, max_channels, dims=2)


def build_unet(arch: dict) -> nn.Module:
    """Build from the ``architecture`` block of model.json: a :class:`UNet3D`, or a :class:`SliceStackNet`
    (``"name": "UNet2.5D"``, a 2-D U-Net on stacks of ``slices`` neighbouring slices along ``axes``)."""
    base, levels = int(arch.get("base", 16)), int(arch.get("levels", 4))
    residual, widest = bool(arch.get("residual", True)), int(arch.get("max_channels", 256))
    channels = int(arch.get("in_channels", 1))
    if arch.get("name") == SliceStackNet.NAME:
        slices = int(arch.get("slices", 5))
        return SliceStackNet(UNet2D(channels * slices, base, levels, residual, widest), slices,
                             tuple(int(a) for a in arch.get("axes", (0, 1, 2))))
    return UNet3D(channels, base, levels, residual, widest)


class SliceStackNet(nn.Module):
    """A 2.5-D network: a 2-D U-Net that sees ``slices`` neighbouring slices and predicts the centre one.

    It takes and returns 3-D tensors like :class:`UNet3D` ((N, C, D, H, W) in, (N, 1, D, H, W) logits out),
    so the sliding-window inference is the same for both. Each axis in ``axes`` is cut into slices in turn
    (the image plane is the other two axes, in their order); the probabilities of the orientations are
    averaged. A stack's channels are contrast-major: channel ``c * slices + s`` is contrast ``c`` at offset
    ``s - slices // 2`` along the cut axis (:func:`slice_stack` builds the same layout for training).
    Beyond the input's ends the stack is zero, as outside the volume in training.
    """

    NAME = "UNet2.5D"

    def __init__(self, net2d: nn.Module, slices: int = 5, axes: tuple[int, ...] = (0, 1, 2),
                 chunk: int = 8) -> None:
        super().__init__()
        self.net = net2d
        self.slices = int(slices)
        self.axes = tuple(axes)
        self.chunk = int(chunk)

    def forward_axis(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """Logits (N, 1, D, H, W) from the slices across spatial ``axis`` (0, 1 or 2) of ``x``."""
        n, c = x.shape[:2]
        moved = x.movedim(axis + 2, 2)                         # (N, C, S, A, B)
        s, a, b = moved.shape[2:]
        half = self.slices // 2
        padded = nn.functional.pad(moved, (0, 0, 0, 0, half, half))
        stacks = padded.unfold(2, self.slices, 1)              # (N, C, S, A, B, k)
        stacks = stacks.permute(0, 2, 1, 5, 3, 4).reshape(n * s, c * self.slices, a, b)
        out = torch.cat([self.net(stacks[i:i + self.chunk]) for i in range(0, n * s, self.chunk)])
        return out.reshape(n, s, 1, a, b).movedim(1, 2).movedim(2, axis + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.sigmoid(self.forward_axis(x, a).float()) for a in self.axes]).mean(0)
        return torch.logit(probs.clamp(1e-6, 1 - 1e-6))


def slice_stack(patch: torch.Tensor, axis: int, slices: int) -> torch.Tensor:
    """A training sample's input for :class:`SliceStackNet`: ``patch`` (C, D, H, W), thin (``slices``) along
    spatial ``axis``, as (C * slices, A, B) in the network's channel layout."""
    moved = patch.movedim(axis + 1, 1)
    if moved.shape[1] != slices:
        raise ValueError(f"patch has {moved.shape[1]} slices along axis {axis}, expected {slices}")
    return moved.reshape(moved.shape[0] * slices, *moved.shape[2:])


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
