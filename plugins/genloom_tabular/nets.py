"""The networks of the tabular generators, after CTGAN and TVAE (Xu et al., 2019), and the copula's graph."""

from __future__ import annotations

import math

import torch
from torch import nn


class Activated(nn.Module):
    """A network whose output is an encoded row, with ``tanh`` on its offsets; the one-hots' logits pass as they are
    (the numpy decoder samples them). What sampling and the export run."""

    def __init__(self, network: nn.Module, tanh_mask: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("tanh_mask", tanh_mask.bool(), persistent=False)
        self.tanh_mask: torch.Tensor

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        raw = self.network(*inputs)
        return torch.where(self.tanh_mask, torch.tanh(raw), raw)


class Residual(nn.Module):
    """CTGAN's generator block: a linear layer, batch norm and ReLU, its output concatenated with its input."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width_in, width_out)
        self.norm = nn.BatchNorm1d(width_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.norm(self.linear(x))), x], dim=1)


class TableGenerator(nn.Module):
    """CTGAN's generator: noise and the conditional vector through residual blocks to an encoded row."""

    def __init__(self, latent_dim: int, cond_dim: int, hidden: list[int], width_out: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim + cond_dim
        for size in hidden:
            layers.append(Residual(width, size))
            width += size
        layers.append(nn.Linear(width, width_out))
        self.body = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The encoded row before the output activation (training applies Gumbel-softmax to its one-hots)."""
        return self.body(torch.cat([noise, cond], dim=1))


class PacDiscriminator(nn.Module):
    """CTGAN's critic over packs of ``pac`` rows (PacGAN), each row with its conditional vector."""

    def __init__(self, row_width: int, hidden: list[int], pac: int) -> None:
        super().__init__()
        self.pac = pac
        layers: list[nn.Module] = []
        width = row_width * pac
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.body(rows.reshape(-1, rows.shape[1] * self.pac))


class TableEncoder(nn.Module):
    """TVAE's encoder: an encoded row to the mean and log-variance of its latent code."""

    def __init__(self, width: int, hidden: list[int], latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(width, latent_dim)
        self.log_var = nn.Linear(width, latent_dim)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(rows)
        return self.mean(hidden), self.log_var(hidden)


class TableDecoder(nn.Module):
    """TVAE's decoder: a latent code to an encoded row, with a learned scale (``sigma``) for every offset."""

    def __init__(self, latent_dim: int, hidden: list[int], width_out: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, width_out))
        self.body = nn.Sequential(*layers)
        self.sigma = nn.Parameter(torch.full((width_out,), 0.1))

    def forward(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoded row before the output activation, and the scales for each row (an output computed from
        ``sigma``, so that DDP sees it used)."""
        return self.body(noise), self.sigma.expand(len(noise), -1)


class GaussianCopula(nn.Module):
    """Independent standard normals -> correlated ones (the correlation's Cholesky factor) -> uniforms (the normal
    CDF, through ``erf``): the copula's draw, which the numpy decoder turns into values by each column's marginal."""

    def __init__(self, columns: int) -> None:
        super().__init__()
        self.register_buffer("cholesky", torch.eye(columns))
        self.cholesky: torch.Tensor

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        correlated = noise @ self.cholesky.T
        return 0.5 * (1 + torch.erf(correlated / math.sqrt(2)))


class PriorDecoder(nn.Module):
    """Noise -> latents from a fitted mixture prior -> the decoder's encoded row."""

    def __init__(self, prior: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.prior, self.decoder = prior, decoder

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.prior(noise))
