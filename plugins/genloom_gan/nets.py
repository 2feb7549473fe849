"""The DCGAN networks: depth follows the image size (4x4 doubled ``levels`` times, 1 to 4 for 8 to 64 pixels).

With ``num_classes > 0`` both become class-conditional: the generator appends a
learned class embedding to the latent, and the discriminator adds a projection
term (Miyato & Koyama, 2018) to its realness logit.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvGenerator(nn.Module):
    """Latent vector (and class label) -> image in [-1, 1], through transposed convolutions that double the size."""

    def __init__(self, latent_dim: int, channels: int, levels: int, width: int, num_classes: int = 0) -> None:
        super().__init__()
        hidden = width * 2 ** (levels - 1)
        self.start = (hidden, 4, 4)
        self.class_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.project = nn.Linear(latent_dim * (2 if num_classes else 1), hidden * 16)
        layers: list[nn.Module] = [nn.BatchNorm2d(hidden), nn.ReLU()]
        for _ in range(levels - 1):
            layers += [
                nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(hidden // 2),
                nn.ReLU(),
            ]
            hidden //= 2
        layers += [nn.ConvTranspose2d(hidden, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embedding is not None:
            latents = torch.cat([latents, self.class_embedding(labels)], dim=1)
        return self.body(self.project(latents).view(-1, *self.start))


class ConvDiscriminator(nn.Module):
    """Image in [-1, 1] (and class label) -> one realness logit, through strided convolutions that halve the size."""

    def __init__(self, channels: int, levels: int, width: int, num_classes: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        hidden_in, hidden = channels, width
        for _ in range(levels):
            layers += [nn.Conv2d(hidden_in, hidden, 4, 2, 1), nn.LeakyReLU(0.2)]
            hidden_in, hidden = hidden, hidden * 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.realness = nn.Linear(hidden_in * 16, 1)
        self.class_projection = nn.Embedding(num_classes, hidden_in * 16) if num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(images)
        logits = self.realness(features).squeeze(1)
        if self.class_projection is not None:
            logits = logits + (self.class_projection(labels) * features).sum(1)
        return logits


class ImageOutput(nn.Module):
    """The generator with its tanh output mapped to images in [0, 1]: what sampling and the ONNX export run."""

    def __init__(self, generator: ConvGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return ((self.generator(latents, labels) + 1) / 2).clamp(0, 1)
