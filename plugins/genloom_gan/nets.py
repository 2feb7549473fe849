"""The DCGAN networks: depth follows the image size (4x4 doubled ``levels`` times)."""

from __future__ import annotations

import torch
from torch import nn

SUPPORTED_SIZES = (8, 16, 32, 64)


def upsampling_levels(size: int) -> int | None:
    """How many times 4x4 doubles to reach ``size``; None for an unsupported size."""
    return SUPPORTED_SIZES.index(size) + 1 if size in SUPPORTED_SIZES else None


class ConvGenerator(nn.Module):
    """Latent vector -> image in [-1, 1], through transposed convolutions that double the size."""

    def __init__(self, latent_dim: int, channels: int, size: int, width: int) -> None:
        super().__init__()
        levels = upsampling_levels(size)
        assert levels is not None, f"unsupported image size {size}"
        hidden = width * 2 ** (levels - 1)
        self.start = (hidden, 4, 4)
        self.project = nn.Linear(latent_dim, hidden * 16)
        layers: list[nn.Module] = [nn.BatchNorm2d(hidden), nn.ReLU()]
        for _ in range(levels - 1):
            layers += [nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(hidden // 2), nn.ReLU()]
            hidden //= 2
        layers += [nn.ConvTranspose2d(hidden, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(latents).view(-1, *self.start))


class ConvDiscriminator(nn.Module):
    """Image in [-1, 1] -> one realness logit, through strided convolutions that halve the size."""

    def __init__(self, channels: int, size: int, width: int) -> None:
        super().__init__()
        levels = upsampling_levels(size)
        assert levels is not None, f"unsupported image size {size}"
        layers: list[nn.Module] = []
        hidden_in, hidden = channels, width
        for _ in range(levels):
            layers += [nn.Conv2d(hidden_in, hidden, 4, 2, 1), nn.LeakyReLU(0.2)]
            hidden_in, hidden = hidden, hidden * 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(hidden_in * 16, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images).squeeze(1)
