"""``ctgan``: a conditional tabular GAN after CTGAN (Xu et al., 2019).

Numeric columns are mode-specific normalised (:mod:`genloom_tabular.transform`); the generator is conditioned on a
category of one discrete column at a time, drawn by log-frequency (training-by-sampling), and a cross-entropy term
makes it honour the condition; the critic sees packs of rows (PacGAN) and is trained with the WGAN-GP loss; the
one-hots pass through Gumbel-softmax in training and are sampled by the Gumbel-max trick when generating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator
from typing_extensions import Self

from genloom_tabular.base import ModeConfig, ModeGenerator
from genloom_tabular.codec import choice_frequencies
from genloom_tabular.data import TableData
from genloom_tabular.transform import category_indices

if TYPE_CHECKING:
    import torch

GUMBEL_TAU = 0.2
"""Temperature of the Gumbel-softmax on the generator's one-hots in training (CTGAN's)."""


class CTGANConfig(ModeConfig):
    """Knobs of ``ctgan`` (CTGAN's defaults unless said)."""

    steps: int = Field(1500, ge=1, description="Optimisation steps (one critic and one generator update each).")
    batch_size: int = Field(500, ge=2, description="Rows per step; a multiple of pac.")
    generator_dims: list[int] = Field(
        [256, 256], min_length=1, description="Widths of the generator's residual blocks."
    )
    discriminator_dims: list[int] = Field([256, 256], min_length=1, description="Widths of the critic's layers.")
    learning_rate: float = Field(2e-4, gt=0, description="Adam learning rate of both networks.")
    weight_decay: float = Field(1e-6, ge=0, description="Adam weight decay of both networks.")
    pac: int = Field(10, ge=1, description="Rows the critic judges together (PacGAN), against mode collapse.")
    gp_weight: float = Field(10.0, ge=0, description="Weight of the WGAN-GP gradient penalty.")

    @model_validator(mode="after")
    def _packs(self) -> Self:
        if self.batch_size % self.pac:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of pac ({self.pac})")
        return self


@dataclass
class Encoded:
    """The training rows, encoded once, with the rows of each discrete column's each category."""

    rows: np.ndarray
    by_category: list[list[np.ndarray]]


class CTGAN(ModeGenerator):
    """Conditional tabular GAN: mode-specific normalisation, training-by-sampling, PacGAN, WGAN-GP."""

    name = "ctgan"
    fixed_fields = (*ModeGenerator.fixed_fields, "generator_dims", "discriminator_dims", "pac")
    Config = CTGANConfig
    description = "conditional tabular GAN (CTGAN: mode-specific normalisation, training-by-sampling, PacGAN)"
    conditional = True
    config: CTGANConfig

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom_tabular.nets import PacDiscriminator, TableGenerator

        width, cond, config = self.codec.transform.width, self.codec.cond_dim, self.config
        return {
            "generator": TableGenerator(config.latent_dim, cond, config.generator_dims, width),
            "discriminator": PacDiscriminator(width + cond, config.discriminator_dims, config.pac),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        import torch

        def adam(name: str) -> torch.optim.Optimizer:
            return torch.optim.Adam(
                self.modules[name].parameters(),
                lr=self.config.learning_rate,
                betas=(0.5, 0.9),
                weight_decay=self.config.weight_decay,
            )

        return {"generator": adam("generator"), "discriminator": adam("discriminator")}

    def get_batch(self, data: TableData, rng: np.random.Generator) -> Any:
        """Conditional vectors drawn by log-frequency, and for a shuffled copy of them real rows that meet them."""
        import torch

        encoded = self._encoded(data)
        n = self.config.batch_size
        columns = self.codec.transform.discrete
        cond = np.zeros((n, self.codec.cond_dim), dtype=np.float32)
        picked_column = rng.integers(0, max(1, len(columns)), n)
        picked_category = np.zeros(n, dtype=np.int64)
        real_index = rng.integers(0, len(encoded.rows), n)
        offsets = np.cumsum([0] + [coding.choice.size for _, coding in columns])
        for position, (column, coding) in enumerate(columns):
            rows = np.flatnonzero(picked_column == position)
            counts = choice_frequencies(column.frequencies, column.missing) * len(encoded.rows)
            shares = np.log(counts + 1)
            chosen = rng.choice(coding.choice.size, size=len(rows), p=shares / shares.sum())
            picked_category[rows] = chosen
            cond[rows, offsets[position] + chosen] = 1
        order = rng.permutation(n)
        draws = rng.random(n)
        for position in range(len(columns)):
            for category, candidates in enumerate(encoded.by_category[position]):
                rows = np.flatnonzero((picked_column[order] == position) & (picked_category[order] == category))
                if len(rows) and len(candidates):
                    real_index[rows] = candidates[(draws[rows] * len(candidates)).astype(np.int64)]
        span_start = np.array([coding.choice.start for _, coding in columns] or [0])[picked_column]
        return (
            torch.from_numpy(cond),
            torch.from_numpy(span_start),
            torch.from_numpy(picked_category),
            torch.from_numpy(encoded.rows[real_index]),
            torch.from_numpy(cond[order]),
        )

    def _encoded(self, data: TableData) -> Encoded:
        rows = self.encoded_rows(data)
        cached: tuple[int, Encoded] | None = getattr(self, "_by_category", None)
        if cached is None or cached[0] != id(data):
            by_category = []
            for column, coding in self.codec.transform.discrete:
                index = category_indices(column, data.frame[column.name])
                by_category.append([np.flatnonzero(index == category) for category in range(coding.choice.size)])
            cached = (id(data), Encoded(rows, by_category))
            self._by_category = cached
        return cached[1]

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        import torch

        cond, span_start, category, real, real_cond = batch
        generator, critic = self.modules["generator"], self.modules["discriminator"]
        noise = torch.randn(len(cond), self.config.latent_dim, device=cond.device)
        fake = self._activate(generator(noise, cond))
        real_scores = critic(torch.cat([real, real_cond], dim=1))
        fake_scores = critic(torch.cat([fake.detach(), cond], dim=1))
        penalty = self._gradient_penalty(torch.cat([real, real_cond], 1), torch.cat([fake.detach(), cond], 1))
        critic_loss = fake_scores.mean() - real_scores.mean() + self.config.gp_weight * penalty
        optimizers["discriminator"].zero_grad(set_to_none=True)
        self.backward(critic_loss)
        self.step(optimizers["discriminator"])

        noise = torch.randn(len(cond), self.config.latent_dim, device=cond.device)
        raw = generator(noise, cond)
        fake_scores = critic(torch.cat([self._activate(raw), cond], dim=1))
        condition_loss = self._condition_loss(raw, span_start, category)
        generator_loss = -fake_scores.mean() + condition_loss
        optimizers["generator"].zero_grad(set_to_none=True)
        self.backward(generator_loss)
        self.step(optimizers["generator"])
        return {
            "critic": critic_loss.item(),
            "generator": generator_loss.item(),
            "condition": condition_loss.item(),
        }

    def _activate(self, raw: torch.Tensor) -> torch.Tensor:
        """Training's output activation: tanh on offsets, Gumbel-softmax on one-hots."""
        import torch
        import torch.nn.functional as F

        parts = []
        for span in self.codec.transform.spans:
            block = raw[:, span.start : span.start + span.size]
            parts.append(torch.tanh(block) if span.activation == "tanh" else F.gumbel_softmax(block, tau=GUMBEL_TAU))
        return torch.cat(parts, dim=1)

    def _condition_loss(self, raw: torch.Tensor, span_start: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the conditioned column's logits against the category asked for."""
        import torch
        import torch.nn.functional as F

        if not self.codec.transform.discrete:
            return raw.new_zeros(())
        losses = []
        for _, coding in self.codec.transform.discrete:
            rows = span_start == coding.choice.start
            if rows.any():
                logits = raw[rows, coding.choice.start : coding.choice.start + coding.choice.size]
                losses.append(F.cross_entropy(logits, category[rows], reduction="sum"))
        return torch.stack(losses).sum() / len(raw)

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """WGAN-GP over packs: the critic's gradient norm at points between real and fake packs, pulled to 1."""
        import torch

        pac = self.config.pac
        alpha = torch.rand(len(real) // pac, 1, 1, device=real.device).repeat(1, pac, real.shape[1]).reshape(real.shape)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = self.modules["discriminator"](mixed)
        (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norms = gradients.reshape(-1, pac * real.shape[1]).norm(2, dim=1)
        return ((norms - 1) ** 2).mean()

    def sampling_network(self) -> torch.nn.Module:
        return self.activated(self.modules["generator"])
