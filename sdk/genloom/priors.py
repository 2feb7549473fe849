"""Latent priors that generators share: a Gaussian mixture fitted to a trained encoder's latent means, which
samples start from instead of N(0, I) (the image VAEs and the tabular VAE use it). A PyTorch module, for plugins
that train; the torch-free runtime never imports it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MixturePrior(nn.Module):
    """A Gaussian mixture over the latents (one mixture per class for a conditional model) that maps standard-normal
    noise ``(N, 1 + latent_dim)`` to latents ``(N, latent_dim)``, in operators any ONNX runtime has.

    The first noise entry picks the component (its normal CDF against the cumulative
    weights); the rest is scaled by that component's Cholesky factor and shifted by its
    mean. Until :meth:`fit` it is N(0, I): one component of zero mean and unit scale.
    """

    upper: torch.Tensor
    means: torch.Tensor
    scales: torch.Tensor

    def __init__(self, latent_dim: int, components: int, num_classes: int = 0) -> None:
        super().__init__()
        groups = max(num_classes, 1)
        self.register_buffer("upper", torch.full((groups, components), 2.0))  # cumulative weights; 2.0: the end
        self.register_buffer("means", torch.zeros(groups, components, latent_dim))
        self.register_buffer("scales", torch.eye(latent_dim).repeat(groups, components, 1, 1))

    def fit(self, group: int, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor) -> None:
        """Set the mixture of class ``group`` (0 when unconditional) from its ``weights`` (K,), ``means`` (K, D)
        and full ``covariances`` (K, D, D); a fit with fewer components than built leaves the rest unpicked."""
        count = len(weights)
        upper = torch.full_like(self.upper[group], 2.0)
        upper[: count - 1] = torch.cumsum(weights, 0)[: count - 1]  # the last fitted one takes what rounding left
        self.upper[group] = upper.to(self.upper.device)
        self.means[group, :count] = means.to(self.means.device)
        self.scales[group, :count] = torch.linalg.cholesky(covariances).to(self.scales.device)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        components, latent_dim = self.means.shape[1:]
        groups = labels if labels is not None else torch.zeros(len(noise), dtype=torch.int64, device=noise.device)
        chance = 0.5 * (1 + torch.erf(noise[:, :1] / math.sqrt(2)))
        picked = (chance >= self.upper[groups]).sum(dim=1)  # how many components' bounds lie below the chance
        row = groups * components + picked  # only the picked component's mean and scale are gathered
        means = self.means.reshape(-1, latent_dim)[row]
        scales = self.scales.reshape(-1, latent_dim, latent_dim)[row]
        return means + (scales @ noise[:, 1:, None]).squeeze(2)
