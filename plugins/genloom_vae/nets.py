"""The VAE networks: a convolutional encoder to a Gaussian posterior, and a decoder back to pixels.

Depth follows the image size: each of ``levels`` (1 to 4 for 8 to 64 pixels)
halves it (encoder) or doubles it (decoder) between the image and a 4x4 feature map. With ``num_classes > 0`` both
are class-conditional: the encoder sees the label as one extra learned channel,
the decoder gets a learned class embedding appended to the latent. Samples start
from a :class:`genloom.priors.MixturePrior` over the latents, fitted after training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genloom.priors import MixturePrior


class ConvEncoder(nn.Module):
    """Image in [0, 1] (and class label) -> mean and log-variance of q(z | x)."""

    def __init__(self, channels: int, levels: int, width: int, latent_dim: int, num_classes: int = 0) -> None:
        super().__init__()
        self.size = 4 * 2**levels
        self.class_channel = nn.Embedding(num_classes, self.size * self.size) if num_classes else None
        layers: list[nn.Module] = []
        hidden_in, hidden = channels + (1 if num_classes else 0), width
        for _ in range(levels):
            layers += [nn.Conv2d(hidden_in, hidden, 4, 2, 1), nn.SiLU()]
            hidden_in, hidden = hidden, hidden * 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.posterior = nn.Linear(hidden_in * 16, 2 * latent_dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.class_channel is not None:
            label_map = self.class_channel(labels).view(-1, 1, self.size, self.size)
            images = torch.cat([images, label_map], dim=1)
        mean, log_variance = self.posterior(self.features(images)).chunk(2, dim=1)
        return mean, log_variance


class ConvDecoder(nn.Module):
    """Latent (and class label) -> pixel logits; ``sigmoid`` of them is the image in [0, 1]."""

    def __init__(self, latent_dim: int, channels: int, levels: int, width: int, num_classes: int = 0) -> None:
        super().__init__()
        hidden = width * 2 ** (levels - 1)
        self.start = (hidden, 4, 4)
        self.class_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.project = nn.Sequential(nn.Linear(latent_dim * (2 if num_classes else 1), hidden * 16), nn.SiLU())
        layers: list[nn.Module] = []
        for _ in range(levels - 1):
            layers += [nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1), nn.SiLU()]
            hidden //= 2
        layers.append(nn.ConvTranspose2d(hidden, channels, 4, 2, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embedding is not None:
            latents = torch.cat([latents, self.class_embedding(labels)], dim=1)
        return self.body(self.project(latents).view(-1, *self.start))


class GaussianLikelihood(nn.Module):
    """The pixels' negative log-likelihood under N(sigmoid(logits), sigma^2), with one learned sigma for all
    pixels: summed per image, averaged over the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(-1.0))

    def forward(self, logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        standardised = (torch.sigmoid(logits) - images) / self.log_scale.exp()
        per_pixel = 0.5 * standardised.square() + self.log_scale + 0.5 * math.log(2 * math.pi)
        return per_pixel.sum() / len(images)


class SampledImages(nn.Module):
    """Noise (and labels) -> latents from the prior (N(0, I) when ``prior`` is None) -> images in [0, 1]: what
    sampling and the export's generating graph run."""

    def __init__(self, decoder: ConvDecoder, prior: MixturePrior | None) -> None:
        super().__init__()
        self.decoder, self.prior = decoder, prior

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        latents = noise if self.prior is None else self.prior(noise, labels)
        return torch.sigmoid(self.decoder(latents, labels))


class DecodedImages(nn.Module):
    """Latents (and labels) -> images in [0, 1]: what sampling, ``decode`` and the ONNX export run."""

    def __init__(self, decoder: ConvDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decoder(latents, labels))


class PosteriorMean(nn.Module):
    """Images (and labels) -> the mean of q(z | x): what ``encode`` and the exported encoder run."""

    def __init__(self, encoder: ConvEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(images, labels)[0]
