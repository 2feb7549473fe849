"""The DCGAN networks: depth follows the image size (4x4 doubled ``levels`` times, 1 to 4 for 8 to 64 pixels).

Each size step is one strided (transposed) convolution, followed by ``refine``
3x3 convolutions at the new size. With ``num_classes > 0`` both become
class-conditional: the generator appends a learned class embedding to the latent,
and the discriminator adds a projection term (Miyato & Koyama, 2018) to its
realness logit. The discriminator can take spectral normalisation (Miyato et al.,
2018) on every layer and a minibatch standard deviation channel (Karras et al.,
2018) that lets it see a batch's lack of variety.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genloom.errors import ConfigError


class ConvGenerator(nn.Module):
    """Latent vector (and class label) -> image in [-1, 1], through transposed convolutions that double the size."""

    def __init__(
        self, latent_dim: int, channels: int, levels: int, width: int, num_classes: int = 0, refine: int = 0
    ) -> None:
        super().__init__()
        hidden = width * 2 ** (levels - 1)
        self.start = (hidden, 4, 4)
        self.class_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.project = nn.Linear(latent_dim * (2 if num_classes else 1), hidden * 16)
        layers: list[nn.Module] = [nn.BatchNorm2d(hidden), nn.ReLU(), *_refinements(hidden, refine)]
        for _ in range(levels - 1):
            layers += [
                nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(hidden // 2),
                nn.ReLU(),
                *_refinements(hidden // 2, refine),
            ]
            hidden //= 2
        layers += [nn.ConvTranspose2d(hidden, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embedding is not None:
            latents = torch.cat([latents, self.class_embedding(labels)], dim=1)
        return self.body(self.project(latents).view(-1, *self.start))


def _refinements(hidden: int, count: int) -> list[nn.Module]:
    """``count`` size-keeping 3x3 convolutions of the generator, each with BatchNorm and ReLU."""
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [nn.Conv2d(hidden, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU()]
    return layers


class MinibatchStd(nn.Module):
    """Appends one channel: the standard deviation of each feature over the batch, averaged (Karras et al., 2018)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        spread = features.std(dim=0, unbiased=False).mean() if len(features) > 1 else features.new_zeros(())
        return torch.cat([features, spread.expand(len(features), 1, *features.shape[2:])], dim=1)


class ConvDiscriminator(nn.Module):
    """Image in [-1, 1] (and class label) -> one realness logit, through strided convolutions that halve the size."""

    def __init__(
        self,
        channels: int,
        levels: int,
        width: int,
        num_classes: int = 0,
        refine: int = 0,
        spectral: bool = False,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()

        def normed(layer: nn.Module) -> nn.Module:
            return spectral_norm(layer) if spectral else layer

        layers: list[nn.Module] = []
        hidden_in, hidden = channels, width
        for _ in range(levels):
            layers += [normed(nn.Conv2d(hidden_in, hidden, 4, 2, 1)), nn.LeakyReLU(0.2)]
            for _ in range(refine):
                layers += [normed(nn.Conv2d(hidden, hidden, 3, 1, 1)), nn.LeakyReLU(0.2)]
            hidden_in, hidden = hidden, hidden * 2
        if minibatch_std:
            layers += [MinibatchStd(), normed(nn.Conv2d(hidden_in + 1, hidden_in, 3, 1, 1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.realness = normed(nn.Linear(hidden_in * 16, 1))
        self.class_projection = normed(nn.Embedding(num_classes, hidden_in * 16)) if num_classes else None

    def freeze_first(self, count: int) -> None:
        """Stop gradients to the first ``count`` convolutions (FreezeD, Mo et al. 2020)."""
        convolutions = [layer for layer in self.features if isinstance(layer, nn.Conv2d)]
        if count > len(convolutions):
            raise ConfigError(
                f"freeze_discriminator_layers: {count} is more than the discriminator's {len(convolutions)} "
                f"convolutions; use at most {len(convolutions)}"
            )
        for layer in convolutions[:count]:
            layer.requires_grad_(False)

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
